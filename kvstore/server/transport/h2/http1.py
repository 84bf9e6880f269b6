"""Plain HTTP/1.1 on the client port, as etcd's cmux hands it to Go's net/http server.

Two kinds of request come this way:

- etcd's plain endpoints (/health, /version, /metrics), answered by ``respond(method, path)``
  once, then the connection is closed (as before the gateway came);
- the grpc-gateway JSON API (kvstore.server.gateway), with what that needs of HTTP/1.1:
  request bodies (Content-Length or chunked), keep-alive (requests one after the other on a
  connection, pipelined ones waiting their turn), ``Expect: 100-continue`` and streamed
  (chunked) responses with trailers.

What a hostile client can hold is bounded: a request head is at most MAX_HEAD bytes; a body is
read on only as the gateway takes it (at most BODY_BUFFER bytes wait, then the connection stops
reading: TCP holds the client back), and the gateway bounds what one request may be
(--max-request-bytes); what comes behind a request in progress waits, bounded the same way.
A streamed response waits for the client to read it (the transport's flow control), and a
client that goes away cancels the request in progress (a watch ends with it). A client that
shuts down its sending side is taken as gone, as Go's server cancels a request's context
when its connection reads EOF.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

from ...gateway import Gateway, Request, served
from ...gateway.gateway import http_date
from ...gateway.status import REASONS

log = logging.getLogger(__name__)

MAX_HEAD = 16384  # bytes of request line and headers
BODY_BUFFER = 65536  # body bytes read ahead of the gateway before reading pauses
MAX_CHUNK_LINE = 4096  # a chunk-size line, extensions included

_LEGACY_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
                   503: "Service Unavailable"}


class BadRequest(Exception):
    """The request cannot be framed: answered 400 and the connection closed."""


class Http1Session:
    """The HTTP/1.1 requests of one connection, one at a time."""

    def __init__(self, conn, respond, gateway: Gateway | None):
        self.conn = conn  # the H2ServerConnection that found HTTP/1.1 on its socket
        self._respond = respond  # (method, path) -> (status, content type, body)
        self._gateway = gateway
        self._buf = bytearray()  # received, not yet taken (a head, a body, the next request)
        self._exchange: _Exchange | None = None
        self._closing = False
        self._reading_paused = False
        self._answers_waiting = False  # the client has not read what was answered: no next request
        self.requests_seen = 0

    # -- from the connection -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._closing:
            return
        self._buf += data
        self._advance()

    def connection_lost(self) -> None:
        self._closing = True
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()

    def goaway(self) -> None:
        """Close once the request in progress (if any) is answered."""
        if self._exchange is not None:
            self._exchange.closing = True
        else:
            self._close()

    # -- requests ------------------------------------------------------------------------------

    def _advance(self) -> None:
        while not self._closing and not self._answers_waiting:
            exchange = self._exchange
            if exchange is not None:
                if not exchange.body_ended:
                    try:
                        exchange.take_body(self._buf)
                    except BadRequest:
                        self._abort()
                        return
                self._pace()
                return
            if not self._buf:
                self._pace()
                return
            if not self._next_request():
                return

    def _pace(self) -> None:
        """Reading pauses while what was received waits for the request in progress."""
        exchange = self._exchange
        waiting = len(self._buf) + (exchange.buffered if exchange is not None else 0)
        busy = exchange is not None or self._answers_waiting
        should_pause = busy and waiting > BODY_BUFFER + MAX_HEAD
        if should_pause != self._reading_paused and not self.conn.transport_closed():
            self._reading_paused = should_pause
            if should_pause:
                self.conn.transport.pause_reading()
            else:
                self.conn.transport.resume_reading()

    def _next_request(self) -> bool:
        """Starts the request whose head is in the buffer; False if it is not all there."""
        buf = self._buf
        if self.requests_seen:
            while buf[:1] in (b"\r", b"\n"):  # blank lines between requests are skipped
                del buf[:1]
        end = buf.find(b"\n\r\n")
        head_end = end + 3
        if end < 0:
            end = buf.find(b"\n\n")
            head_end = end + 2
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._close()
            return False
        head = bytes(buf[:end + 1])
        del buf[:head_end]
        self.requests_seen += 1
        lines = head.split(b"\n")
        request_line = lines[0].rstrip(b"\r").decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._legacy("GET", None, "HTTP/1.1")
            return False
        method, target, version = parts
        path = target.split("?", 1)[0]
        if self._gateway is None or not served(path):
            self._legacy(method, target, version)
            return False
        try:
            headers = _headers(lines[1:])
            exchange = _Exchange(self, method, target, version, headers)
        except BadRequest as e:
            self._bad_request(str(e))
            return False
        self._exchange = exchange
        if exchange.expect_continue and not exchange.body_ended:
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        exchange.run(self._gateway)
        return True

    def exchange_done(self, exchange: _Exchange) -> None:
        if exchange is not self._exchange:
            return
        self._exchange = None
        if exchange.closing or not exchange.body_ended or not exchange.finished:
            self._close()
            return
        self.conn.last_activity = self.conn.loop.time()
        if self.conn.writes_waiting():
            # pipelined requests are not answered faster than the client reads the answers
            self._answers_waiting = True
            self.conn.loop.create_task(self._after_writes())
            return
        self._advance()

    async def _after_writes(self) -> None:
        await self.drain()
        self._answers_waiting = False
        self._advance()

    def _legacy(self, method: str, target: str | None, version: str) -> None:
        """etcd's plain endpoints: one answer, then the connection is closed."""
        if target is None:
            status, ctype, body = 400, "text/plain; charset=utf-8", b"Bad Request\n"
            method = "GET"
        else:
            status, ctype, body = self._respond(method, target)
        allow = "Allow: GET, HEAD\r\n" if status == 405 else ""
        head = (f"{version} {status} {_LEGACY_REASONS.get(status, 'Error')}\r\n{allow}"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n").encode("latin-1")
        self._write(head if method == "HEAD" else head + body)
        self._close()

    def _bad_request(self, why: str) -> None:
        """Go's answer to a request it cannot read."""
        status = f"400 Bad Request{': ' + why if why else ''}"
        self._write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    f"Connection: close\r\n\r\n{status}".encode("latin-1"))
        self._close()

    # -- the socket ----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self.conn.transport_closed():
            self.conn.transport.write(data)

    def _close(self) -> None:
        self._closing = True
        if not self.conn.transport_closed():
            self.conn.transport.close()

    def _abort(self) -> None:
        self._closing = True
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        if not self.conn.transport_closed():
            self.conn.transport.close()

    async def drain(self) -> None:
        await self.conn.http1_drain()


def _headers(lines: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for raw in lines:
        line = raw.rstrip(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise BadRequest("")  # obsolete line folding
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadRequest("")
        out.append((name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")))
    return out


class _Exchange:
    """One gateway request: its body as it arrives, and the response writer."""

    def __init__(self, session: Http1Session, method: str, target: str, version: str,
                 headers: list[tuple[str, str]]):
        self.session = session
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.http10 = version == "HTTP/1.0"
        connection = ",".join(v for n, v in headers if n == "connection").lower()
        self.closing = self.http10 or "close" in [t.strip() for t in connection.split(",")]
        self.expect_continue = any(n == "expect" and v.lower() == "100-continue" for n, v in headers)
        # the body's framing
        te = [v.lower() for n, v in headers if n == "transfer-encoding"]
        lengths = {v for n, v in headers if n == "content-length"}
        self.chunked = False
        self.remaining = 0
        if te:
            if te != ["chunked"] or self.http10:
                raise BadRequest("")
            self.chunked = True
        elif lengths:
            if len(lengths) != 1:
                raise BadRequest("")
            (length,) = lengths
            if not length.isdigit() or len(length) > 18:
                raise BadRequest("")
            self.remaining = int(length)
        self.body_ended = not self.chunked and self.remaining == 0
        self._chunk_state = "size"  # size, data, data-end, trailers
        self._pieces: deque[bytes] = deque()
        self.buffered = 0
        self._waiter: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._started = False
        self._chunked_out = False
        self.finished = False
        self._head_only = method == "HEAD"

    # -- the request body ----------------------------------------------------------------------

    def take_body(self, buf: bytearray) -> None:
        """Moves what of ``buf`` is this request's body into the body's pieces."""
        if self.chunked:
            self._take_chunked(buf)
        elif self.remaining and buf:
            n = min(self.remaining, len(buf), max(BODY_BUFFER - self.buffered, 0))
            if n:
                self._piece(bytes(buf[:n]))
                del buf[:n]
                self.remaining -= n
                if not self.remaining:
                    self._ended()

    def _take_chunked(self, buf: bytearray) -> None:
        while buf and not self.body_ended and self.buffered < BODY_BUFFER:
            state = self._chunk_state
            if state == "size":
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise BadRequest("")
                    return
                line = bytes(buf[:nl]).rstrip(b"\r").split(b";", 1)[0].strip()
                del buf[:nl + 1]
                if not line or len(line) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in line):
                    raise BadRequest("")
                size = int(line, 16)
                if size == 0:
                    self._chunk_state = "trailers"
                else:
                    self.remaining = size
                    self._chunk_state = "data"
            elif state == "data":
                n = min(self.remaining, len(buf), BODY_BUFFER - self.buffered)
                self._piece(bytes(buf[:n]))
                del buf[:n]
                self.remaining -= n
                if not self.remaining:
                    self._chunk_state = "data-end"
            elif state == "data-end":
                if buf[:2] == b"\r\n":
                    del buf[:2]
                elif buf[:1] == b"\n":
                    del buf[:1]
                elif len(buf) < 2 and buf[:1] == b"\r":
                    return
                else:
                    raise BadRequest("")
                self._chunk_state = "size"
            else:  # trailers: lines up to an empty one, dropped
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > MAX_HEAD:
                        raise BadRequest("")
                    return
                line = bytes(buf[:nl]).rstrip(b"\r")
                del buf[:nl + 1]
                if not line:
                    self._ended()

    def _piece(self, data: bytes) -> None:
        self._pieces.append(data)
        self.buffered += len(data)
        self._wake()

    def _ended(self) -> None:
        self.body_ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        while not self._pieces:
            if self.body_ended:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = self._pieces.popleft()
        self.buffered -= len(data)
        session = self.session
        if not self.body_ended and session._buf:
            session._advance()  # the body's next bytes, now that there is room
        else:
            session._pace()
        return data

    # -- running -------------------------------------------------------------------------------

    def run(self, gateway: Gateway) -> None:
        request = Request(self.method, self.target, self.headers, self,
                          getattr(self.session.conn, "peer_cn", None))
        self._task = asyncio.get_running_loop().create_task(gateway.handle(request, self))
        self._task.add_done_callback(self._done)

    def cancel(self) -> None:
        self.body_ended = True
        self._wake()
        if self._task is not None:
            self._task.cancel()

    def _done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway request %s %s failed", self.method, self.target, exc_info=task.exception())
            self.closing = True
        self.session.exchange_done(self)

    # -- the response (gateway.ResponseWriter) -------------------------------------------------

    def start(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        lines = [f"{self.version} {status} {REASONS.get(status, 'Status ' + str(status))}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Date: {http_date()}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        if self.closing and not self.http10:
            lines.append("Connection: close")
        if length is None:
            if self.http10:
                self.closing = True  # no chunks in HTTP/1.0: the body ends with the connection
            else:
                lines.append("Transfer-Encoding: chunked")
                self._chunked_out = True
        self._started = True
        self.session._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def write(self, data: bytes) -> None:
        if self._head_only or not data:
            return
        if self._chunked_out:
            self.session._write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.session._write(data)

    async def drain(self) -> None:
        await self.session.drain()

    def finish(self, trailers: list[tuple[str, str]] | None = None) -> None:
        if self._chunked_out and not self._head_only:
            tail = "".join(f"{name}: {value}\r\n" for name, value in trailers or ())
            self.session._write(f"0\r\n{tail}\r\n".encode("latin-1"))
        self.finished = True

    def close_after(self) -> None:
        self.closing = True
