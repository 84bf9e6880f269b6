"""The grpcio (grpc.aio) server transport, with generic handlers built from etcd's descriptors.

Each registered service object gets a handler; its async methods are found by etcd's method
names. EtcdErrors become gRPC statuses with etcd's code and message. Each method's calls are
counted as the h2 transport counts them (methods.CallCounts), though grpcio serves no /metrics.
"""
from __future__ import annotations

import asyncio
import inspect
import logging

import grpc

from ... import errors
from ...limits import with_overhead
from ..services.batch import ResponseBatch
from .connection_limits import ConnectionLimits
from .methods import CODE_NAMES, CallCounts, request_decoder, serialize, service_methods
from .tls import ClientTLS

log = logging.getLogger(__name__)

# grpcio's own limit sits above ours so that our check, with grpc-go's wording, answers first.
_GRPCIO_SLACK_BYTES = 64 * 1024 * 1024
_MAX_INT32 = 2**31 - 1
_CODES = {c.name: c.value[0] for c in grpc.StatusCode}  # "NOT_FOUND" -> 5
_CANCELLED, _UNKNOWN = CODE_NAMES.index("Canceled"), CODE_NAMES.index("Unknown")


class _Refused:
    """Stands in for a request refused as it was decoded (over the receive limit, or a Txn
    nested past any limit): its handler answers with the error."""

    __slots__ = ("error",)

    def __init__(self, error: errors.EtcdError):
        self.error = error


def _deserializer(message_class, limit: int, counts: CallCounts):
    decode = request_decoder(message_class)

    def deserialize(data: bytes):
        counts.received_bytes += len(data)
        if len(data) > limit:
            return _Refused(errors.MessageTooLarge(len(data), limit))
        try:
            return decode(data)
        except errors.EtcdError as e:
            return _Refused(e)

    return deserialize


async def _checked(request_iterator):
    async for request in request_iterator:
        if type(request) is _Refused:
            raise request.error
        yield request


def _serializer(counts: CallCounts):
    def serialize_counted(response) -> bytes:
        body = serialize(response)
        counts.sent_bytes += len(body)
        return body

    return serialize_counted


def _status(e: errors.EtcdError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, e.code, grpc.StatusCode.UNKNOWN)


def _count_end(counts: CallCounts, e: BaseException | None) -> None:
    """The call ended: OK, or the status its exception becomes."""
    if e is None:
        code = 0
    elif isinstance(e, errors.EtcdError):
        code = _CODES.get(e.code, _UNKNOWN)
    elif isinstance(e, asyncio.CancelledError):
        code = _CANCELLED
    else:
        code = _UNKNOWN
    counts.handled[code] += 1


def _metadata(context: grpc.aio.ServicerContext) -> list[tuple[bytes, bytes]]:
    """The call's metadata as the h2 transport gives it: (name, value) byte pairs."""
    return [(k.encode(), v if isinstance(v, bytes) else v.encode())
            for k, v in context.invocation_metadata() or ()]


class _PeerNames:
    """Whether a call's verified client certificate names its user (--client-cert-auth on a
    TLS listener). grpcio has no connection objects to keep it on: each call asks its
    auth context (a dict made in C, only when this is on)."""

    __slots__ = ("enabled",)

    def __init__(self):
        self.enabled = False

    def __call__(self, context: grpc.aio.ServicerContext) -> str | None:
        if not self.enabled:
            return None
        names = context.auth_context().get("x509_common_name")  # (only once TLS verified it)
        return names[0].decode(errors="replace") if names else None


def _unary_unary(method, intercept, counts: CallCounts, peer_cn: _PeerNames):
    async def handler(request, context: grpc.aio.ServicerContext):
        counts.started += 1
        try:
            if type(request) is _Refused:
                raise request.error
            if intercept is not None:
                intercept("unary", _metadata(context), peer_cn(context))
            result = method(request)
            response = await result if inspect.isawaitable(result) else result
        except errors.EtcdError as e:
            _count_end(counts, e)
            await context.abort(_status(e), e.message)
        except BaseException as e:
            _count_end(counts, e)
            raise
        counts.handled[0] += 1
        return response

    return handler


def _unary_stream(method, intercept, counts: CallCounts, peer_cn: _PeerNames):
    async def handler(request, context: grpc.aio.ServicerContext):
        counts.started += 1
        try:
            if type(request) is _Refused:
                raise request.error
            if intercept is not None:
                intercept("stream", _metadata(context), peer_cn(context))
            async for response in method(request):
                if type(response) is ResponseBatch:  # grpcio sends one message a write
                    for one in response:
                        yield one
                else:
                    yield response
        except errors.EtcdError as e:
            _count_end(counts, e)
            await context.abort(_status(e), e.message)
        except BaseException as e:  # (GeneratorExit: the call went away, as cancelled)
            _count_end(counts, e if not isinstance(e, GeneratorExit) else asyncio.CancelledError())
            raise
        else:
            _count_end(counts, None)

    return handler


def _stream(method, intercept, counts: CallCounts, peer_cn: _PeerNames):
    async def handler(request_iterator, context: grpc.aio.ServicerContext):
        counts.started += 1
        try:
            if intercept is not None:
                intercept("stream", _metadata(context), peer_cn(context))
            async for response in method(_checked(request_iterator)):
                if type(response) is ResponseBatch:  # grpcio sends one message a write
                    for one in response:
                        yield one
                else:
                    yield response
        except errors.EtcdError as e:
            _count_end(counts, e)
            await context.abort(_status(e), e.message)
        except BaseException as e:
            _count_end(counts, e if not isinstance(e, GeneratorExit) else asyncio.CancelledError())
            raise
        else:
            _count_end(counts, None)

    return handler


_HANDLERS = {
    "unary": (grpc.unary_unary_rpc_method_handler, _unary_unary),
    "server_stream": (grpc.unary_stream_rpc_method_handler, _unary_stream),
    "bidi": (grpc.stream_stream_rpc_method_handler, _stream),
}


def generic_handlers(services, max_receive_bytes: int, intercept=None,
                     calls: list[CallCounts] | None = None,
                     peer_cn: _PeerNames | None = None) -> list[grpc.GenericRpcHandler]:
    """``calls`` gets each method's CallCounts."""
    peer_cn = peer_cn or _PeerNames()
    by_service: dict[str, dict] = {}
    for m in service_methods(services):
        make_handler, wrap = _HANDLERS[m.kind]
        counts = m.counts()
        if calls is not None:
            calls.append(counts)
        by_service.setdefault(m.service, {})[m.name] = make_handler(
            wrap(m.func, intercept, counts, peer_cn),
            request_deserializer=_deserializer(m.request, max_receive_bytes, counts),
            response_serializer=_serializer(counts))
    return [grpc.method_handlers_generic_handler(name, handlers)
            for name, handlers in by_service.items()]


class GrpcioServer:
    def __init__(self, services: list, max_request_bytes: int, http1=None, intercept=None,
                 limits: ConnectionLimits | None = None):
        # grpcio cannot share its port with plain HTTP: the HTTP endpoints need --transport h2.
        # Of the connection limits, grpcio takes the timeouts; the cap on connections is h2's.
        max_receive = with_overhead(max_request_bytes)
        limits = limits or ConnectionLimits()
        self._server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_receive + _GRPCIO_SLACK_BYTES),
            ("grpc.max_send_message_length", _MAX_INT32),
            ("grpc.max_concurrent_streams", 2**31 - 1),
            ("grpc.max_connection_idle_ms", int(limits.idle_timeout * 1000)),
            ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout * 1000)),
        ])
        self.calls: list[CallCounts] = []  # what /metrics would read of each method's calls
        self._peer_cn = _PeerNames()
        self._server.add_generic_rpc_handlers(generic_handlers(services, max_receive, intercept,
                                                               self.calls, self._peer_cn))

    def listen(self, host: str, port: int, tls: ClientTLS | None = None) -> int:
        """``tls``: grpcio's server credentials from it (ClientTLS.validate_for_grpcio says
        what they cannot do); under --client-cert-auth, the common name of a client's verified
        certificate is its calls' ``peer_cn``."""
        if tls is not None:
            self._peer_cn.enabled |= tls.client_cert_auth
            bound = self._server.add_secure_port(f"{host}:{port}", tls.grpc_credentials())
        else:
            bound = self._server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise OSError(f"listen tcp {host}:{port}: bind: address already in use")
        return bound

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float = 1.0) -> None:
        await self._server.stop(grace)
