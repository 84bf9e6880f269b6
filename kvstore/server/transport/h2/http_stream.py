"""Plain HTTP on an HTTP/2 stream: /health, /version, /metrics and the JSON gateway for clients
that speak HTTP/2 to the port (curl over https:// picks h2 by ALPN), as etcd's Go server
answers them there too. A stream whose request is not gRPC (no application/grpc content type)
gets this handler instead of a GrpcCall.
"""
from __future__ import annotations

import asyncio
import logging

from ...gateway import Gateway, Request, served
from .grpc_call import literal, literal_indexed_name

log = logging.getLogger(__name__)

# headers HTTP/2 forbids (RFC 9113 §8.2.2): the framing is the stream's
_CONNECTION_SPECIFIC = frozenset({"connection", "keep-alive", "proxy-connection",
                                  "transfer-encoding", "upgrade"})


def is_plain_http(headers) -> bool:
    """Not a gRPC call: no gRPC content type, and a GET or HEAD, or a path of the gateway's
    (what else comes without the content type stays a GrpcCall's to refuse, as gRPC does)."""
    method = path = b""
    for name, value in headers:
        if name == b"content-type" and value.startswith(b"application/grpc"):
            return False
        if name == b":method":
            method = value
        elif name == b":path":
            path = value
    return method in (b"GET", b"HEAD") or served(path.split(b"?", 1)[0].decode("latin-1"))


class HttpStream:
    """One request and its answer; also the gateway's Body (the DATA received) and its
    ResponseWriter (HEADERS, DATA, trailers)."""

    def __init__(self, conn, stream, headers, respond, gateway: Gateway | None):
        self.conn = conn
        self.stream = stream
        self._respond = respond  # (method, path) -> (status, content type, body)
        self._gateway = gateway
        self.method = self.path = ""
        self._headers: list[tuple[str, str]] = []
        for name, value in headers:
            if name == b":method":
                self.method = value.decode("latin-1")
            elif name == b":path":
                self.path = value.decode("latin-1")
            elif not name.startswith(b":"):
                self._headers.append((name.decode("latin-1"), value.decode("latin-1")))
        self._pieces: list[bytes] = []
        self._ended = False
        self._waiter: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._length: int | None = None
        if gateway is not None and served(self.path.split("?", 1)[0]):
            request = Request(self.method, self.path, self._headers, self, conn.peer_cn)
            self._task = conn.loop.create_task(self._run(gateway.handle(request, self)))

    async def _run(self, handling) -> None:
        try:
            await handling
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("gateway request %s %s over HTTP/2 failed", self.method, self.path)
            self.conn.send_data(self.stream, b"", end_stream=True)

    # -- from the connection -------------------------------------------------------------------

    def data(self, payload: bytes) -> None:
        self._pieces.append(payload)
        self._wake()

    def end_of_stream(self) -> None:
        self._ended = True
        self._wake()
        if self._task is None:  # a plain endpoint: answered once the request is whole
            status, content_type, body = self._respond(self.method, self.path)
            self.start(status, [("Content-Type", content_type)], len(body))
            self.write(body if self.method != "HEAD" else b"")
            self.finish()

    def cancel(self) -> None:
        self._ended = True
        self._wake()
        if self._task is not None:
            self._task.cancel()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the gateway's Body --------------------------------------------------------------------

    async def read(self) -> bytes:
        while not self._pieces:
            if self._ended:
                return b""
            self._waiter = self.conn.loop.create_future()
            await self._waiter
        return self._pieces.pop(0)

    # -- the gateway's ResponseWriter ----------------------------------------------------------

    def start(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        block = literal_indexed_name(8, str(status).encode())  # :status
        for name, value in headers:
            name = name.lower()
            if name not in _CONNECTION_SPECIFIC and name != "trailer":
                block += literal(name.encode("latin-1"), value.encode("latin-1"))
        if length is not None:
            block += literal(b"content-length", str(length).encode())
        self._length = length
        self.conn.send_headers(self.stream, block)

    def write(self, data: bytes) -> None:
        if data:
            self.conn.send_data(self.stream, data)

    async def drain(self) -> None:
        await self.conn.writable(self.stream)

    def finish(self, trailers: list[tuple[str, str]] | None = None) -> None:
        if trailers:
            block = b"".join(literal(n.lower().encode("latin-1"), v.encode("latin-1"))
                             for n, v in trailers)
            self.conn.send_headers(self.stream, block, end_stream=True)
        else:
            self.conn.send_data(self.stream, b"", end_stream=True)

    def close_after(self) -> None:
        pass  # the stream ends with its answer; the connection goes on
