"""The client connection's frame loop (pure-Python twin of ``receive`` in
ext/unary_client.pyx; unary_select picks one).

It takes the frames H2Connection.data_received's loop would, in order. The frames of a unary
call's usual response -- DATA without padding on an open stream whose window takes it, HEADERS
with END_HEADERS and neither padding nor priority on an open stream -- it handles itself, as
the connection core's _frame would, in fewer calls; anything else, every error included, goes
to ``conn._frame``, the reference.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ..h2 import frames as f
from ..h2.settings import ACK_THRESHOLD

if TYPE_CHECKING:
    from ..h2.client import H2ClientConnection, ResponseHandler
    from ..h2.stream import Stream, StreamHandler

_ONLY_END_HEADERS = f.END_HEADERS | f.PADDED | f.PRIORITY_FLAG


def receive(conn: H2ClientConnection, frames: list[tuple[int, int, int, bytes]]) -> bool:
    """The frames in order; returns whether the connection closed on the way (the rest of the
    frames then ignored)."""
    streams = conn.streams
    for ftype, flags, sid, payload in frames:
        try:
            if conn._headers_sid or not _fast_frame(conn, streams, ftype, flags, sid, payload):
                conn._frame(ftype, flags, sid, payload)
        except f.StreamError as e:
            conn._reset(e.stream_id, e.code)
        if conn._closed:
            return True
    return False


def _fast_frame(conn: H2ClientConnection, streams: dict[int, Stream], ftype: int, flags: int,
                sid: int, payload: bytes) -> bool:
    """Handles the frame if it is of the common case; False if it is not (nothing done)."""
    if ftype == f.DATA:
        if flags & f.PADDED:
            return False
        stream = streams.get(sid)
        size = len(payload)
        if stream is None or stream.remote_closed or stream.recv_window < size:
            return False
        conn._conn_recv_unacked += size  # flow control counts the whole frame
        stream.recv_window -= size
        stream.recv_unacked += size
        handler = stream.handler  # the stream lets go of it if this data ends the call
        assert handler is not None  # an open stream's handler is made
        if size:
            handler.data(payload)
        if flags & f.END_STREAM:
            _remote_ended(conn, streams, stream, handler)
        return True
    if ftype == f.HEADERS:
        if flags & _ONLY_END_HEADERS != f.END_HEADERS or not sid & 1:
            return False
        stream = streams.get(sid)
        if stream is None or stream.remote_closed:
            return False
        headers = conn._decoder.decode(payload)  # always decoded: the HPACK state is shared
        end_stream = bool(flags & f.END_STREAM)
        handler = cast("ResponseHandler", stream.handler)  # open_stream took a ResponseHandler
        handler.headers(headers, end_stream)
        if end_stream and streams.get(sid) is stream:  # not reset by the handler
            _remote_ended(conn, streams, stream, handler)
        return True
    return False


def _remote_ended(conn: H2ClientConnection, streams: dict[int, Stream], stream: Stream,
                  handler: StreamHandler) -> None:
    """H2Connection._remote_ended, and _forget inline in its usual case."""
    stream.remote_closed = True
    handler.end_of_stream()
    if stream.closed:
        if stream.drained is None and not conn._going_away:
            stream.handler = None  # handler and stream refer to each other: no cycle for the GC
            if streams.pop(stream.id, None) is not None:
                blocked = conn._blocked
                if blocked:
                    blocked.pop(stream.id, None)
        else:
            conn._forget(stream)


def window_updates_due(conn: H2ClientConnection) -> bool:
    """Whether H2Connection._send_window_updates would send anything now."""
    if conn._conn_recv_unacked >= ACK_THRESHOLD:
        return True
    return any(s.recv_unacked >= ACK_THRESHOLD and not s.remote_closed
               for s in conn.streams.values())
