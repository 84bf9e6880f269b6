"""A streaming gRPC call: messages out as the caller sends them, messages in as they complete.

StreamingCall serves bidirectional streams (Watch, LeaseKeepAlive) and, with one request and
done_writing, server-streaming ones (RangeStream). Sending waits for flow control: ``send``
returns once the message is written or the stream's window has room again, so a slow server
holds back its own sender and no more than one message per stream waits in memory. Received
messages wait in a deque until read: the connection acknowledges DATA as it arrives, so a
reader that stops reading is the one whose buffer grows.

The call's end is the status in the trailers: OK ends the iteration, anything else is raised
as GrpcError once the messages before it have been read.
"""
from __future__ import annotations

import asyncio
from collections import deque

from ..h2 import frames as f
from ..h2.client import H2ClientConnection
from ..h2.stream import Stream
from .messages import framed
from .response import GrpcResponse
from .status import CANCELLED, OK, UNAVAILABLE, GrpcError


class StreamingCall(GrpcResponse):
    __slots__ = ("_conn", "_stream", "_received", "_waiter", "_error", "_writing", "__weakref__")

    def __init__(self, conn: H2ClientConnection):
        super().__init__()
        self._conn = conn
        self._stream: Stream | None = None
        self._received: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None  # a reader waiting for a message
        self._error: GrpcError | None = None  # the outcome, if not OK
        self._writing = True

    def open(self, block: bytes) -> StreamingCall:
        """Opens the stream with a header block encoded for open_stream_encoded."""
        try:
            self._stream = self._conn.open_stream_encoded(block, self)
        except ConnectionError as e:
            self.fail(UNAVAILABLE, str(e))
        return self

    # -- sending -------------------------------------------------------------------------------

    async def send(self, message: bytes) -> None:
        """Sends one message; waits while the stream's window is full. Raises GrpcError if the
        call has ended with an error, RuntimeError after done_writing."""
        if not self._writing:
            raise RuntimeError("send after done_writing")
        if self._error is not None:
            raise self._error
        stream = self._stream
        if self.ended or stream is None or stream.closed:
            raise RuntimeError("send after the call has ended")
        conn = self._conn
        if not conn.send_data(stream, framed(message)):
            await conn.writable(stream)

    def done_writing(self) -> None:
        """Half-closes: no more requests; responses go on until the server ends the call."""
        if self._writing:
            self._writing = False
            stream = self._stream
            if stream is not None and not stream.closed:
                self._conn.send_data(stream, b"", end_stream=True)

    def cancel(self) -> None:
        """Ends the call from our side (RST_STREAM CANCEL); reading it then raises CANCELLED.
        The connection calls it too, once the server reset the stream or the socket is gone
        (the stream has no handler any more): reading then raises UNAVAILABLE, and says why
        when the socket went with an error (a TLS alert: no client certificate, say)."""
        stream = self._stream
        if stream is None or stream.handler is self:
            self.fail(CANCELLED, "Locally cancelled")  # grpcio's words; _end resets the stream
            return
        reason = self._conn.lost_reason
        self.fail(UNAVAILABLE, f"the connection was lost: {reason}" if reason is not None
                  else "the stream was reset or the connection lost")

    # -- receiving -----------------------------------------------------------------------------

    def __aiter__(self) -> StreamingCall:
        return self

    async def __anext__(self) -> bytes:
        while not self._received:
            if self.ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = self._conn.loop.create_future()
            await self._waiter
        return self._received.popleft()

    def _message(self, message: bytes) -> None:
        self._received.append(message)
        self._wake()

    def _end(self, code: int, message: str) -> None:
        if code != OK:
            self._error = GrpcError(code, message)
        stream = self._stream
        if (stream is not None and self._conn.streams.get(stream.id) is stream
                and not (stream.closed and stream.remote_closed)):
            # the call is over while the stream is not: we cancelled, the response was
            # malformed, or the server ended the call before we had finished sending
            self._conn.reset_stream(stream, f.CANCEL)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
