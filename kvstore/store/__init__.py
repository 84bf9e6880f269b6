"""The store layer: etcd's request semantics over MVCC and a log (etcd's etcdserver)."""
from .store import Store

__all__ = ["Store"]
