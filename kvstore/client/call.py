"""One unary gRPC call on a stream of an H2ClientConnection.

The request goes out as grpc-go sends it (POST, te: trailers, one length-prefixed message);
the response's message is reassembled across DATA frames, and the call's outcome comes from
the trailers, or from the one header block of a trailers-only response.
"""
from __future__ import annotations

import asyncio
import math
import struct

from ..h2 import frames as f
from ..h2.client import H2ClientConnection
from ..h2.connection import Headers
from .status import (
    DEADLINE_EXCEEDED,
    INTERNAL,
    OK,
    UNAVAILABLE,
    GrpcError,
    code_of_http_status,
    decode_message,
    parse_code,
)

PREFIX = struct.Struct(">BL")  # gRPC message prefix: compressed flag, big-endian length


_TIMEOUT_UNITS = ((b"n", 1e9), (b"u", 1e6), (b"m", 1e3), (b"S", 1.0), (b"M", 1 / 60),
                  (b"H", 1 / 3600))


def encode_timeout(seconds: float) -> bytes:
    """grpc-timeout: at most 8 digits, in the finest unit that fits (rounded up, as grpc-go)."""
    for unit, per_second in _TIMEOUT_UNITS:
        n = max(0, math.ceil(seconds * per_second))
        if n < 10**8:
            return b"%d%s" % (n, unit)
    return b"99999999H"


def request_headers(path: bytes, authority: bytes, timeout: float | None = None) -> Headers:
    headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
               (b":authority", authority), (b"content-type", b"application/grpc"),
               (b"te", b"trailers")]
    if timeout is not None:
        headers.append((b"grpc-timeout", encode_timeout(timeout)))
    return headers


class UnaryResponse:
    """The stream's ResponseHandler: resolves ``result`` to the response message's bytes, or
    fails it with a GrpcError."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.result: asyncio.Future[bytes] = loop.create_future()
        self._headers_seen = False
        self._status: dict[bytes, bytes] | None = None  # the trailers, once they came
        self._body = bytearray()
        self._messages: list[bytes] = []

    def headers(self, headers: Headers, end_stream: bool) -> None:
        fields = dict(headers)
        if not self._headers_seen:
            self._headers_seen = True
            http = fields.get(b":status", b"")
            if http != b"200":
                # not a gRPC server's answer: the status is the HTTP one, as grpc maps it
                code = code_of_http_status(int(http)) if http.isdigit() else INTERNAL
                self._fail(code, f"unexpected HTTP status {http.decode('latin-1')}")
                return
            if not fields.get(b"content-type", b"").startswith(b"application/grpc"):
                self._fail(INTERNAL, "the response's content-type is not application/grpc")
                return
            if not end_stream:
                return
        self._status = fields  # the trailers, or a trailers-only response's one block

    def data(self, payload: bytes) -> None:
        body = self._body
        body += payload
        # whole messages out as they complete; a partial one waits for the next frame
        pos = 0
        while len(body) - pos >= PREFIX.size:
            compressed, n = PREFIX.unpack_from(body, pos)
            if len(body) - pos - PREFIX.size < n:
                break
            if compressed:
                # we send no grpc-accept-encoding, so a compressed message is the server's fault
                self._fail(INTERNAL, "compressed message without a negotiated encoding")
                return
            self._messages.append(bytes(body[pos + PREFIX.size:pos + PREFIX.size + n]))
            pos += PREFIX.size + n
        del body[:pos]

    def end_of_stream(self) -> None:
        if self.result.done():
            return
        status = self._status
        if status is None:
            self._fail(INTERNAL, "the stream ended without trailers")
            return
        code = parse_code(status.get(b"grpc-status"))
        if code != OK:
            self._fail(code, decode_message(status.get(b"grpc-message", b"")))
        elif self._body:
            self._fail(INTERNAL, "the stream ended inside a message")
        elif len(self._messages) != 1:
            # a unary call has one response message: grpc-go's errors for none or more
            self._fail(INTERNAL, "no response message" if not self._messages
                       else "more than one response message for a unary call")
        else:
            self.result.set_result(self._messages[0])

    def cancel(self) -> None:
        # RST_STREAM from the server, or the connection lost: nothing more will come
        self._fail(UNAVAILABLE, "the stream was reset or the connection lost")

    def _fail(self, code: int, message: str) -> None:
        if not self.result.done():
            self.result.set_exception(GrpcError(code, message))


async def unary_call(conn: H2ClientConnection, path: bytes, authority: bytes,
                     message: bytes, timeout: float | None = None) -> bytes:
    """Sends one request message on a new stream; returns the response message's bytes.
    ``timeout`` (seconds) goes to the server as grpc-timeout and is kept here too."""
    try:
        async with asyncio.timeout(timeout):
            return await _call(conn, path, authority, message, timeout)
    except TimeoutError:
        raise GrpcError(DEADLINE_EXCEEDED, "Deadline Exceeded") from None  # grpcio's words


async def _call(conn: H2ClientConnection, path: bytes, authority: bytes, message: bytes,
                timeout: float | None) -> bytes:
    response = UnaryResponse(conn.loop)
    try:
        stream = conn.open_stream(request_headers(path, authority, timeout), response)
    except ConnectionError as e:
        raise GrpcError(UNAVAILABLE, str(e)) from None
    # one write with the prefix: the message is sent whole (flow control holds back the rest)
    conn.send_data(stream, PREFIX.pack(0, len(message)) + message, end_stream=True)
    try:
        return await response.result
    except asyncio.CancelledError:
        # the caller gave up (a timeout; the await cancelled ``result`` too): tell the server,
        # as grpc does, so it stops work
        if conn.streams.get(stream.id) is stream:
            conn.reset_stream(stream, f.CANCEL)
        raise
