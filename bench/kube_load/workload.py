"""The load: three streams, their keys, their rates at x1, and when a step counts as sustained."""
from __future__ import annotations

STREAMS = ("leases", "pods", "events")
BASE = {"leases": 10_000.0, "pods": 1_000.0, "events": 500.0}  # requests/s at x1
GOAL_ACHIEVED = 0.95  # of the offered rate
GOAL_P99 = 0.100  # seconds

LEASE_PREFIX = b"/registry/leases/kube-node-lease/"
POD_PREFIX = b"/registry/pods/"
EVENT_PREFIX = b"/registry/events/default/"


def lease_key(i: int) -> bytes:
    return LEASE_PREFIX + b"node-%05d" % i


def pod_key(i: int) -> bytes:
    return POD_PREFIX + b"default/pod-%d" % i


def event_key(i: int) -> bytes:
    return EVENT_PREFIX + b"ev-%d" % i
