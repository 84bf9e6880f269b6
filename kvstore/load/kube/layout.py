"""Where each resource's objects live, and how big they are.

The keys follow kube-apiserver's layout (/registry/<resource>/<namespace>/<name>), in names
of our own (namespace or name prefix ``kvstore-load``), so that a run can clear exactly what
it wrote, even on an etcd that also holds a real cluster's objects. A value is an opaque blob
of the object's size behind kube's protobuf magic (``k8s\\x00``), as kube stores them.
"""
from __future__ import annotations

import random

NAME = b"kvstore-load"

# the group/resource names kube-apiserver's --etcd-servers-overrides uses ("" is the core group)
LEASES = "coordination.k8s.io/leases"
PODS = "/pods"
EVENTS = "/events"

# The sizes of a node's Lease, a Pod and an Event in kube's protobuf encoding, typical of a
# real cluster (a Pod with a few containers, its status and managed fields: ~4 KB).
DEFAULT_SIZES = {LEASES: 300, PODS: 4096, EVENTS: 700}

LEASE_PREFIX = b"/registry/leases/kube-node-lease/" + NAME + b"-node-"
POD_PREFIX = b"/registry/pods/" + NAME + b"/"
EVENT_PREFIX = b"/registry/events/" + NAME + b"/"


def lease_key(node: int) -> bytes:
    return LEASE_PREFIX + b"%06d" % node


def pod_key(worker: int, n: int) -> bytes:
    """Pod ``n`` of worker ``worker``: each worker creates and deletes its own pods."""
    return POD_PREFIX + b"pod-%d-%d" % (worker, n)


def initial_pod_key(i: int) -> bytes:
    """The pods written before the clock: what the reads read, and LISTs list."""
    return POD_PREFIX + b"pod-%07d" % i


def event_key(worker: int, n: int) -> bytes:
    return EVENT_PREFIX + b"event-%d-%d" % (worker, n)


def object_value(size: int, seed: int) -> bytes:
    """An object's stored bytes: kube's protobuf magic, then random bytes up to ``size``."""
    magic = b"k8s\x00"
    return magic + random.Random(seed).randbytes(max(0, size - len(magic)))
