"""etcd's grpc-gateway JSON API (POST /v3/kv/range and the rest) on the client port."""
from .gateway import Body, Gateway, Request, ResponseWriter
from .routes import served

__all__ = ["Body", "Gateway", "Request", "ResponseWriter", "served"]
