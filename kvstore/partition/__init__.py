"""Partitioned keyspaces: the partition map (map.py), the kube profile (kube.py), and
Partitions, the map in one process with a Store per partition (embedded.py)."""
from .embedded import Partitions
from .kube import in_process_kube_map, kube_map
from .map import Partition, PartitionMap

__all__ = ["Partition", "PartitionMap", "Partitions", "in_process_kube_map", "kube_map"]
