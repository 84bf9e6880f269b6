"""The service methods a transport serves, found from etcd's descriptors (shared by both), and
what a transport counts of each one's calls."""
from __future__ import annotations

from typing import Any, NamedTuple

from google.protobuf.message_factory import GetMessageClass

from ...api import rpc_pb2
from .txn_decode import decode_txn


class ServiceMethod(NamedTuple):
    service: str  # "etcdserverpb.KV"
    name: str  # "Range"
    func: object  # the service object's bound async method
    request: type[Any]  # the request message class
    response: type[Any]
    kind: str  # "unary", "server_stream" or "bidi"
    # A bidi method's answer to one request given on the spot, when it can be (None: not now),
    # as the service's ``<Name>_at_once``: a transport that can answers there, with no task.
    at_once: object = None
    # A streaming method's responses as a ResponseFeed (services/feed.py), as the service's
    # ``<Name>_feed``: a transport that can sends them when the feed says it has some, with
    # no task per batch (None: the method's async iterator).
    feed: object = None

    @property
    def path(self) -> bytes:
        return f"/{self.service}/{self.name}".encode()

    def counts(self) -> CallCounts:
        return CallCounts(self.service, self.name, self.kind)


# gRPC status codes by number, as grpc-go names them (go-grpc-prometheus's grpc_code label).
CODE_NAMES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
              "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
              "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
              "Unauthenticated")
# go-grpc-prometheus's grpc_type label of a method kind
GRPC_TYPES = {"unary": "unary", "server_stream": "server_stream", "bidi": "bidi_stream"}


class CallCounts:
    """One method's calls as a transport counts them, in plain ints on the request path; /metrics
    reads them when it is scraped (kvstore/server/metrics.py)."""

    __slots__ = ("service", "name", "kind", "started", "handled", "received_bytes", "sent_bytes")

    def __init__(self, service: str, name: str, kind: str):
        self.service = service  # "etcdserverpb.KV"
        self.name = name  # "Put"
        self.kind = kind  # "unary", "server_stream" or "bidi"
        self.started = 0  # calls begun
        self.handled = [0] * len(CODE_NAMES)  # calls ended, by status code
        self.received_bytes = 0  # request messages' bytes (not their gRPC length prefixes)
        self.sent_bytes = 0  # response messages' bytes


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
    """Every etcd method the given service objects define; the others stay unimplemented.

    A service names its service (``service_name = "etcdserverpb.KV"``) and, when it is not in
    rpc.proto, the descriptor of the .proto file that defines it
    (``descriptor = v3lock_pb2.DESCRIPTOR``).
    """
    out = []
    for service in services:
        fdesc = getattr(service, "descriptor", rpc_pb2.DESCRIPTOR)
        sdesc = fdesc.services_by_name[service.service_name.rsplit(".", 1)[-1]]
        for m in sdesc.methods:
            func = getattr(service, m.name, None)
            if func is None:
                continue
            kind = "bidi" if m.client_streaming else "server_stream" if m.server_streaming else "unary"
            out.append(ServiceMethod(service.service_name, m.name, func,
                                     GetMessageClass(m.input_type), GetMessageClass(m.output_type),
                                     kind, getattr(service, f"{m.name}_at_once", None),
                                     getattr(service, f"{m.name}_feed", None)))
    return out
