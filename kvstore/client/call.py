"""Unary gRPC calls on streams of an H2ClientConnection.

The machinery is callback-based: ``start_unary`` sends one request and its UnaryCall tells
``callback(code, payload)`` the outcome once, (0, the response message's bytes) or (a gRPC
code, its message) -- no coroutine and no Future per call, so that a load generator can keep
tens of thousands of calls a second in flight. ``unary_call`` is the async form on top.
"""
from __future__ import annotations

import asyncio
from functools import partial

from ..h2 import frames as f
from ..h2.client import H2ClientConnection
from .headers import with_timeout
from .status import DEADLINE_EXCEEDED, OK, GrpcError
from .unary import Callback
from .unary_select import UnaryCall, start_unary

__all__ = ["Callback", "UnaryCall", "start_unary", "unary_call"]


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
