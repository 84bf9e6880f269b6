"""The service methods a transport serves, found from etcd's descriptors (shared by both)."""
from __future__ import annotations

from typing import Any, NamedTuple

from ...api import rpc_pb2
from ...api.rpc_pb2 import DESCRIPTOR as _RPC
from .txn_decode import decode_txn


class ServiceMethod(NamedTuple):
    service: str  # "etcdserverpb.KV"
    name: str  # "Range"
    func: object  # the service object's bound async method
    request: type[Any]  # the request message class
    response: type[Any]
    kind: str  # "unary", "server_stream" or "bidi"

    @property
    def path(self) -> bytes:
        return f"/{self.service}/{self.name}".encode()


def request_decoder(message_class):
    """bytes -> request message; a Txn's decoder reads nesting deeper than protobuf's limit."""
    if message_class is rpc_pb2.TxnRequest:
        return decode_txn
    return message_class.FromString


def serialize(response) -> bytes:
    """A response's bytes: services answer with messages, or with bytes already serialized
    (the store's fast paths)."""
    if type(response) is bytes:
        return response
    return response.SerializeToString()


def service_methods(services) -> list[ServiceMethod]:
    """Every etcd method the given service objects define; the others stay unimplemented."""
    out = []
    for service in services:
        sdesc = _RPC.services_by_name[service.service_name.split(".")[-1]]
        for m in sdesc.methods:
            func = getattr(service, m.name, None)
            if func is None:
                continue
            kind = "bidi" if m.client_streaming else "server_stream" if m.server_streaming else "unary"
            out.append(ServiceMethod(service.service_name, m.name, func,
                                     getattr(rpc_pb2, m.input_type.name),
                                     getattr(rpc_pb2, m.output_type.name), kind))
    return out
