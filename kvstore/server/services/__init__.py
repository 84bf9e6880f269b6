"""etcd's gRPC services, thin: each method takes a decoded request, calls the store, returns
the response. No transport types appear here; errors are the store's EtcdErrors.

A service names the etcd service it implements (and, outside rpc.proto, the descriptor of the
.proto file that defines it); methods it does not define are answered UNIMPLEMENTED by the
transport.
"""
from .auth import AuthService
from .cluster import ClusterService
from .election import ElectionService
from .kv import KVService
from .lease import LeaseService
from .lock import LockService
from .maintenance import MaintenanceService
from .watch import WatchService


def all_services(store) -> list:
    return [KVService(store), WatchService(store), LeaseService(store), MaintenanceService(store),
            ClusterService(store), LockService(store), ElectionService(store),
            AuthService(store)]


__all__ = ["KVService", "WatchService", "LeaseService", "MaintenanceService", "ClusterService",
           "LockService", "ElectionService", "AuthService", "all_services"]
