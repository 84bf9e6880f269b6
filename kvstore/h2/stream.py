"""One HTTP/2 stream's state, and what the connection tells the handler that owns it."""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from .settings import OUR_INITIAL_WINDOW


class StreamHandler(Protocol):
    """What the connection core calls on a stream's handler (the server's grpc_call.GrpcCall,
    a client's response handler). Header blocks are the role's business: see the role's own
    protocol for them."""

    def data(self, payload: bytes) -> None: ...
    def end_of_stream(self) -> None: ...  # the peer sent END_STREAM
    def cancel(self) -> None: ...  # reset, or the connection is gone


class Stream:
    __slots__ = ("id", "send_window", "recv_window", "recv_unacked", "handler", "remote_closed",
                 "closed", "pending", "pending_end", "pending_trailers", "drained", "recv_held",
                 "held_conn_bytes")

    def __init__(self, stream_id: int, send_window: int):
        self.id = stream_id
        self.send_window = send_window
        self.recv_window = OUR_INITIAL_WINDOW
        self.recv_unacked = 0
        # The handler takes no more for now: no window goes back for this stream, nor for the
        # connection for what this stream received meanwhile (held_conn_bytes).
        self.recv_held = False
        self.held_conn_bytes = 0
        self.handler: StreamHandler | None = None  # set once made; None once the stream ends
        self.remote_closed = False  # the peer sent END_STREAM
        self.closed = False  # we send nothing more: END_STREAM sent, or reset
        self.pending: deque[bytes] = deque()  # DATA payload waiting for window
        self.pending_end = False  # END_STREAM goes with the last pending DATA
        self.pending_trailers: bytes | None = None  # a header block to send after the data
        self.drained: asyncio.Future | None = None
