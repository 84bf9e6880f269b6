"""Unary gRPC calls on streams of an H2ClientConnection.

The machinery is callback-based: ``start_unary`` sends one request and its UnaryCall tells
``callback(code, payload)`` the outcome once, (0, the response message's bytes) or (a gRPC
code, its message) -- no coroutine and no Future per call, so that a load generator can keep
tens of thousands of calls a second in flight. ``unary_call`` is the async form on top.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from ..h2 import frames as f
from ..h2.client import H2ClientConnection
from ..h2.stream import Stream
from .headers import with_timeout
from .messages import PREFIX
from .response import GrpcResponse
from .status import DEADLINE_EXCEEDED, INTERNAL, OK, UNAVAILABLE, GrpcError

# (0, response bytes) or (gRPC code, message)
Callback = Callable[[int, bytes | str], None]


class UnaryCall(GrpcResponse):
    """A unary call's response: one message, then OK."""

    __slots__ = ("_callback", "_response", "_count")

    def __init__(self, callback: Callback):
        super().__init__()
        self._callback = callback
        self._response = b""
        self._count = 0

    def _message(self, message: bytes) -> None:
        self._count += 1
        self._response = message

    def _end(self, code: int, message: str) -> None:
        callback, self._callback = self._callback, _told  # the handler may outlive the call
        if code != OK:
            callback(code, message)
        elif self._count == 1:
            callback(OK, self._response)
        else:
            # a unary call has one response message: grpc-go's errors for none or more
            callback(INTERNAL, "no response message" if not self._count
                     else "more than one response message for a unary call")


def _told(code: int, payload: bytes | str) -> None:
    pass


def start_unary(conn: H2ClientConnection, block: bytes, message: bytes,
                callback: Callback) -> Stream | None:
    """Sends one request (its header block encoded for open_stream_encoded) on a new stream.
    The callback is never called before this returns; if the connection cannot take the call,
    it is called soon with UNAVAILABLE, and None returned."""
    call = UnaryCall(callback)
    try:
        # the request whole: flow control holds back what the windows do not take yet
        return conn.open_request(block, call, PREFIX.pack(0, len(message)), message)
    except ConnectionError as e:
        conn.loop.call_soon(call.fail, UNAVAILABLE, str(e))
        return None


def _resolve(future: asyncio.Future, code: int, payload: bytes | str) -> None:
    if not future.done():
        future.set_result((code, payload))


async def unary_call(conn: H2ClientConnection, block: bytes, message: bytes,
                     timeout: float | None = None) -> bytes:
    """Sends one request message; returns the response message's bytes, or raises GrpcError.
    ``timeout`` (seconds) goes to the server as grpc-timeout and is kept here too."""
    future: asyncio.Future[tuple[int, bytes | str]] = conn.loop.create_future()
    stream = start_unary(conn, with_timeout(block, timeout), message,
                         partial(_resolve, future))
    try:
        if timeout is None:
            code, payload = await future
        else:
            async with asyncio.timeout(timeout):
                code, payload = await future
    except (TimeoutError, asyncio.CancelledError) as e:
        # the caller gave up (a deadline, or cancelled): tell the server, as grpc does, so it
        # stops work
        if stream is not None and conn.streams.get(stream.id) is stream:
            conn.reset_stream(stream, f.CANCEL)
        if isinstance(e, TimeoutError):
            raise GrpcError(DEADLINE_EXCEEDED, "Deadline Exceeded") from None  # grpcio's words
        raise
    if code != OK:
        assert isinstance(payload, str)
        raise GrpcError(code, payload)
    assert isinstance(payload, bytes)
    return payload
