"""etcd's gRPC services, thin: each method takes a decoded request, calls the store, returns
the response. No transport types appear here; errors are the store's EtcdErrors.

A service names the etcd service it implements; methods it does not define are answered
UNIMPLEMENTED by the transport.
"""
from .cluster import ClusterService
from .kv import KVService
from .lease import LeaseService
from .maintenance import MaintenanceService
from .watch import WatchService


def all_services(store) -> list:
    return [KVService(store), WatchService(store), LeaseService(store), MaintenanceService(store),
            ClusterService(store)]


__all__ = ["KVService", "WatchService", "LeaseService", "MaintenanceService", "ClusterService",
           "all_services"]
