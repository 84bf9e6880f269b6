"""kvstore's own etcd client: unary KV calls over kvstore's HTTP/2 (kvstore.h2), no grpc."""
from .kv import Client, connect
from .status import GrpcError

__all__ = ["Client", "GrpcError", "connect"]
