"""etcd's grpc-gateway: JSON over HTTP/1.1 onto the same service methods gRPC calls.

Transport-independent: ``Gateway.handle(request, writer)`` reads the request's body from
``request.body`` and answers through ``writer`` (a ResponseWriter: the HTTP/1.1 connection
code frames it). What it answers, and how, is what etcd 3.4's gateway (grpc-gateway v1.9 with
``JSONPb{OrigName: true}``) answers:

- a unary method: the JSON response (Content-Length), or a gRPC error as
  ``{"error","message","code"}`` with the code's HTTP status, chunked and with the
  ``Grpc-Trailer-Content-Type`` trailer that grpc-gateway forwards from the gRPC trailers;
- a body that is not JSON of the request's shape: 400, code 3 (2 and 500 for a streaming
  method's first request), with Go's wording;
- a streaming method: newline-delimited ``{"result":...}`` chunks; an error ends the stream
  with an ``{"error":{grpc_code, http_code, message, http_status}}`` chunk. A bidirectional
  method (Watch, LeaseKeepAlive) takes one request per JSON value of the body, as they come;
  the body's end half-closes the call (a watch goes on, as etcd's does);
- a method no service here implements: UNIMPLEMENTED, worded as grpc-go words it.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
from collections import deque
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote

from google.protobuf import descriptor_pool, message_factory

from ... import errors
from ..services.batch import ResponseBatch
from . import routes
from .json_codec import (
    JsonError,
    TooLarge,
    ValueStream,
    encode_error,
    encode_message,
    encode_result,
    encode_stream_error,
    to_message,
)
from .status import CODES, INVALID_ARGUMENT, REASONS, RESOURCE_EXHAUSTED, UNKNOWN, http_status

log = logging.getLogger(__name__)

CORS = [("Access-Control-Allow-Headers", "accept, content-type, authorization"),
        ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
        ("Access-Control-Allow-Origin", "*")]
JSON = ("Content-Type", "application/json")
GRPC_METADATA = ("Grpc-Metadata-Content-Type", "application/grpc")
TRAILER = ("Trailer", "Grpc-Trailer-Content-Type")
GRPC_TRAILER = [("Grpc-Trailer-Content-Type", "application/grpc")]
TEXT = ("Content-Type", "text/plain; charset=utf-8")
NOSNIFF = ("X-Content-Type-Options", "nosniff")

# Requests a streaming method has not read yet: past QUEUE_HIGH the body is not read on (the
# connection stops reading: TCP holds the client back) until the method is down to QUEUE_LOW.
QUEUE_HIGH = 256
QUEUE_LOW = 64


class Body(Protocol):
    async def read(self) -> bytes:
        """The next piece of the request body; b"" once it has ended."""


class ResponseWriter(Protocol):
    def start(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        """The status line and headers (Date and the framing are the writer's); ``length``
        None: the body is streamed (chunked)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None:
        """Until the client has taken what was written (flow control)."""

    def finish(self, trailers: list[tuple[str, str]] | None = None) -> None: ...

    def close_after(self) -> None:
        """The connection is not used for another request (the body was not read to its end)."""


class Request(NamedTuple):
    method: str
    target: str  # path and query, as on the request line
    headers: list[tuple[str, str]]  # (lower-case name, value)
    body: Body
    peer_cn: str | None = None  # the common name of a client certificate TLS verified


class _Method(NamedTuple):
    func: Any  # None: no service here implements it
    request: Any  # the request message class (None: not even known)
    response: Any
    kind: str  # "unary", "server_stream", "bidi"
    service: str
    name: str
    service_served: bool


class Gateway:
    def __init__(self, methods, max_receive: int, intercept=None, refuses_common_names=None):
        """``methods``: kvstore.server.transport.methods.ServiceMethod of every method served.
        ``refuses_common_names()``: whether a request with a client certificate's common name
        is refused now (etcd: client-cert-auth and auth enabled), since the gateway would not
        take that name for its user."""
        self._refuses_common_names = refuses_common_names
        self._served = {(m.service, m.name): m for m in methods}
        self._services = {m.service for m in methods}
        self.max_receive = max_receive
        self.max_body = 2 * max_receive + 65536  # a JSON body of the largest request, at most
        self._intercept = intercept
        self._methods: dict[tuple[str, str], _Method] = {}

    # -- routing -------------------------------------------------------------------------------

    def _method(self, service: str, name: str) -> _Method:
        m = self._methods.get((service, name))
        if m is None:
            served = self._served.get((service, name))
            if served is not None:
                m = _Method(served.func, served.request, served.response, served.kind, service, name, True)
            else:
                m = _unserved(service, name, service in self._services)
            self._methods[service, name] = m
        return m

    async def handle(self, req: Request, w: ResponseWriter) -> None:
        raw_path, _, query = req.target.partition("?")
        path = unquote(raw_path)
        if (req.peer_cn and path.startswith(("/v3/", "/v3beta/"))
                and self._refuses_common_names is not None and self._refuses_common_names()):
            _text(w, 400, "CommonName of client sending a request against gateway will be "
                          "ignored and not used as expected\n")
            return
        if req.method == "OPTIONS":  # etcd's CORS wrapper answers preflights itself
            w.start(200, list(CORS), 0)
            w.finish()
            return
        clean = routes.clean_path(path)
        if clean != path or path == "/v3":
            _redirect(w, req.method, (clean if path != "/v3" else "/v3/") + (f"?{query}" if query else ""))
            return
        route = routes.find(path)
        if route is None:
            _text(w, 404, "Not Found\n")
            return
        if req.method != "POST":
            _text(w, 405, "Method Not Allowed\n")
            return
        method = self._method(*route)
        metadata = _metadata(req.headers)
        if method.kind == "bidi":
            await self._bidi(method, req.body, metadata, w)
            return
        body = await _read_all(req.body, self.max_body)
        if body is None:
            w.close_after()
            _grpc_error(w, RESOURCE_EXHAUSTED, f"grpc: received message larger than max "
                                               f"(more than {self.max_body} vs. {self.max_receive})")
            return
        values = ValueStream(len(body) + 1)
        values.feed(body)
        values.end()
        try:
            value = values.next()
            request = None if method.request is None else to_message(
                None if value is ValueStream.EOF else value, method.request)
        except JsonError as e:
            _plain_error(w, INVALID_ARGUMENT, str(e))
            return
        if request is not None and request.ByteSize() > self.max_receive:
            _grpc_error(w, RESOURCE_EXHAUSTED, f"grpc: received message larger than max "
                                               f"({request.ByteSize()} vs. {self.max_receive})")
            return
        if method.kind == "unary":
            await self._unary(method, request, metadata, w)
        else:
            await self._stream(method, request, metadata, w)

    # -- calls ---------------------------------------------------------------------------------
    #
    # The interceptor gets no peer_cn from the gateway, whatever certificate the HTTP client
    # presented: etcd's grpc-gateway calls etcd's gRPC server over a connection of its own, and
    # etcd's AuthInfoFromTLS (auth/store.go) ignores the common name of a call that carries
    # grpcgateway-accept metadata ("ignoring common name in gRPC-gateway proxy request"). A
    # request's user comes from its Authorization token alone. (What etcd refuses of a request
    # with a certificate while auth is on: handle().)

    async def _unary(self, method: _Method, request, metadata, w: ResponseWriter) -> None:
        try:
            if method.func is None:
                raise _unimplemented(method)
            if self._intercept is not None:
                self._intercept("unary", metadata, None)  # no peer_cn: see above
            result = method.func(request)
            if isinstance(result, asyncio.Future):
                result = await asyncio.shield(result)  # a proposed write completes regardless
            elif asyncio.iscoroutine(result):
                result = await result
        except Exception as e:
            code, message = self._status(e, method)
            _grpc_error(w, code, message)
            return
        if type(result) is bytes:
            result = method.response.FromString(result)
        body = encode_message(result)
        w.start(200, [*CORS, JSON, GRPC_METADATA], len(body))
        w.write(body)
        w.finish()

    async def _bidi(self, method: _Method, body: Body, metadata, w: ResponseWriter) -> None:
        values = ValueStream(self.max_receive)
        queue = _Requests()
        try:
            first = await _next_value(values, body)
            if first is not ValueStream.EOF and method.request is not None:
                first = to_message(first, method.request)
        except JsonError as e:
            _plain_error(w, UNKNOWN, str(e))
            return
        except TooLarge as e:
            w.close_after()
            _plain_error(w, RESOURCE_EXHAUSTED, f"grpc: received message larger than max "
                                                f"({e.args[0]} vs. {self.max_receive})")
            return
        reader = None
        if first is ValueStream.EOF:
            queue.end()
        else:
            queue.push(first)
            reader = asyncio.get_running_loop().create_task(self._read_requests(method, values, body, queue))
        try:
            await self._stream(method, queue, metadata, w, headers_known=first is not ValueStream.EOF)
        finally:
            if reader is not None:
                reader.cancel()

    async def _read_requests(self, method: _Method, values: ValueStream, body: Body,
                             queue: _Requests) -> None:
        """The body's further requests, onto the call: the first one that is not JSON of the
        request's shape ends them (grpc-gateway half-closes the call and says nothing)."""
        try:
            while True:
                await queue.room()
                value = await _next_value(values, body)
                if value is ValueStream.EOF:
                    return
                queue.push(to_message(value, method.request) if method.request is not None else value)
        except (JsonError, TooLarge) as e:
            log.debug("gateway: %s.%s: failed to decode request: %s", method.service, method.name, e)
        finally:
            queue.end()

    async def _stream(self, method: _Method, requests, metadata, w: ResponseWriter,
                      headers_known: bool = True) -> None:
        """Streams the responses of ``method.func(requests)`` as chunks; the head goes with
        the first one (a gRPC server sends its headers with its first message), or with the
        end."""
        started = False
        responses = None

        def start(status: int = 200) -> None:
            nonlocal started
            headers = [*CORS, JSON]
            if status == 200 and headers_known:
                headers.append(GRPC_METADATA)
            w.start(status, headers, None)
            started = True

        try:
            if method.func is None:
                raise _unimplemented(method)
            if self._intercept is not None:
                self._intercept("stream", metadata, None)  # no peer_cn: see above
            responses = method.func(requests)
            async for response in responses:
                if not started:
                    start()
                for one in response if type(response) is ResponseBatch else (response,):
                    if type(one) is bytes:
                        one = method.response.FromString(one)
                    w.write(encode_result(one) + b"\n")
                await w.drain()
        except asyncio.CancelledError:
            raise  # the client went away
        except Exception as e:
            code, message = self._status(e, method)
            status = http_status(code)
            if not started:
                headers_known = False  # a trailers-only answer: no headers to forward
                start(status)
            w.write(encode_stream_error(code, status, message, REASONS.get(status, "")))
        finally:
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()
        if not started:
            headers_known = False
            start()
        w.finish()

    def _status(self, e: BaseException, method: _Method) -> tuple[int, str]:
        if isinstance(e, errors.EtcdError):
            return CODES.get(e.code, UNKNOWN), e.message
        log.error("gateway: %s.%s failed", method.service, method.name, exc_info=e)
        return UNKNOWN, f"Unexpected {type(e).__name__}: {e}"


class _Requests:
    """The requests a streaming method reads (an async iterator), filled from the body."""

    def __init__(self):
        self._items: deque = deque()
        self._ended = False
        self._waiter: asyncio.Future | None = None
        self._room: asyncio.Future | None = None

    def push(self, message) -> None:
        self._items.append(message)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def room(self) -> None:
        """Until the method has read its backlog down (the body is not read on meanwhile)."""
        if len(self._items) >= QUEUE_HIGH:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        item = self._items.popleft()
        if self._room is not None and len(self._items) <= QUEUE_LOW and not self._room.done():
            self._room.set_result(None)
        return item


async def _next_value(values: ValueStream, body: Body):
    while True:
        value = values.next()
        if value is not ValueStream.NEED:
            return value
        data = await body.read()
        if data:
            values.feed(data)
        else:
            values.end()


async def _read_all(body: Body, limit: int) -> bytes | None:
    out = bytearray()
    while data := await body.read():
        out += data
        if len(out) > limit:
            return None
    return bytes(out)


def _metadata(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """The gRPC metadata grpc-gateway makes of a request's headers (runtime.AnnotateContext):
    Authorization, and Grpc-Metadata-* without the prefix."""
    out = []
    for name, value in headers:
        if name == "authorization":
            out.append((b"authorization", value.encode("latin-1")))
        elif name.startswith("grpc-metadata-"):
            out.append((name[14:].encode("latin-1"), value.encode("latin-1")))
    return out


def _unserved(service: str, name: str, service_served: bool) -> _Method:
    """A method no service here implements; its messages if their descriptors are loaded."""
    request = response = None
    kind = "unary"
    try:
        desc = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        pass
    else:
        request = message_factory.GetMessageClass(desc.input_type)
        response = message_factory.GetMessageClass(desc.output_type)
        kind = ("bidi" if desc.client_streaming else
                "server_stream" if desc.server_streaming else "unary")
    return _Method(None, request, response, kind, service, name, service_served)


def _unimplemented(method: _Method) -> errors.EtcdError:
    """grpc-go's answer for a method or a service it does not serve."""
    e = errors.EtcdError(f"unknown method {method.name} for service {method.service}"
                         if method.service_served else f"unknown service {method.service}")
    e.code = "UNIMPLEMENTED"
    return e


# -- answers ---------------------------------------------------------------------------------

def _grpc_error(w: ResponseWriter, code: int, message: str) -> None:
    """runtime.HTTPError for an error a gRPC call returned (its trailers forwarded)."""
    body = encode_error(code, message)
    w.start(http_status(code), [*CORS, JSON, TRAILER], None)
    w.write(body)
    w.finish(GRPC_TRAILER)


def _plain_error(w: ResponseWriter, code: int, message: str) -> None:
    """runtime.HTTPError for an error before any gRPC call (no metadata to forward)."""
    body = encode_error(code, message)
    w.start(http_status(code), [*CORS, JSON], len(body))
    w.write(body)
    w.finish()


def _text(w: ResponseWriter, status: int, text: str) -> None:
    """Go's http.Error."""
    body = text.encode()
    w.start(status, [*CORS, TEXT, NOSNIFF], len(body))
    w.write(body)
    w.finish()


def _redirect(w: ResponseWriter, method: str, location: str) -> None:
    """Go's ServeMux redirect to the cleaned path (a body only for GET and HEAD)."""
    if method in ("GET", "HEAD"):
        body = f'<a href="{location}">Moved Permanently</a>.\n\n'.encode()
        w.start(301, [*CORS, ("Content-Type", "text/html; charset=utf-8"), ("Location", location)], len(body))
        w.write(body)
    else:
        w.start(301, [*CORS, ("Location", location)], 0)
    w.finish()


def http_date(now: float | None = None) -> str:
    return email.utils.formatdate(now, usegmt=True)
