"""The kube profile: kube-apiserver's hottest resources, each in a partition of its own.

EKS split its largest clusters' etcd the same way: nodes, pods, leases and events churn most,
and kube-apiserver already sends a resource to its own endpoints (--etcd-servers-overrides).
Keys are kube-apiserver's defaults (--etcd-prefix /registry); nodes are stored as "minions".
"""
from __future__ import annotations

from .map import Partition, PartitionMap

# (partition, key prefix under the etcd prefix, kube-apiserver group/resource names)
KUBE_PARTITIONS = (
    ("nodes", "minions/", ("/nodes",)),
    ("pods", "pods/", ("/pods",)),
    ("leases", "leases/", ("coordination.k8s.io/leases",)),
    ("events", "events/", ("/events",)),
)

# The default partition listens on the given port; the others on the ports after the one the
# supervisor's metrics take (2379 -> 2382..2385, metrics 2381 as kubeadm's etcd has them).
METRICS_PORT_OFFSET = 2
FIRST_PARTITION_PORT_OFFSET = 3


def kube_map(host: str = "127.0.0.1", port: int = 2379, scheme: str = "http",
             etcd_prefix: str = "/registry") -> PartitionMap:
    """The kube profile's map, the default partition on ``scheme://host:port``."""
    base = etcd_prefix.rstrip("/") + "/"
    h = f"[{host}]" if ":" in host else host
    parts = [Partition("default", url=f"{scheme}://{h}:{port}")]
    for i, (name, sub, resources) in enumerate(KUBE_PARTITIONS):
        parts.append(Partition(name, prefixes=((base + sub).encode(),),
                               url=f"{scheme}://{h}:{port + FIRST_PARTITION_PORT_OFFSET + i}",
                               resources=resources))
    return PartitionMap.of(parts)


def in_process_kube_map(etcd_prefix: str = "/registry") -> PartitionMap:
    """The same keyspaces without URLs, for kvstore.Partitions in one process."""
    return PartitionMap.of(Partition(p.name, p.prefixes, "", p.resources)
                           for p in kube_map(etcd_prefix=etcd_prefix))
