"""The client's side of an HTTP/2 connection, on the same core as the server's.

Minimal so far: it sends the preface and our SETTINGS, opens streams with a header block (HPACK
with a dynamic table, as the peer's SETTINGS_HEADER_TABLE_SIZE allows), sends DATA under flow
control, and hands a stream's response headers, DATA and trailers to that stream's handler.
It does not yet keep to the peer's SETTINGS_MAX_CONCURRENT_STREAMS, nor send PINGs.
"""
from __future__ import annotations

from typing import Protocol, cast

from . import frames as f
from .config import H2Configuration
from .connection import H2Connection, Headers
from .hpack_select import Encoder
from .stream import Stream, StreamHandler

_CLIENT_SIDE = H2Configuration(client_side=True)


class ResponseHandler(StreamHandler, Protocol):
    """What a client's stream handler gets besides DATA, END_STREAM and a reset."""

    # The response's headers, then (ending the stream) its trailers; a response without DATA
    # may be one block with end_stream (gRPC's trailers-only error).
    def headers(self, headers: Headers, end_stream: bool) -> None: ...


class H2ClientConnection(H2Connection):
    def __init__(self) -> None:
        super().__init__(_CLIENT_SIDE)
        self._encoder = Encoder()
        self._table_size_update_due = False  # the encoder owes the peer a size update

    def open_stream(self, headers: Headers, handler: ResponseHandler,
                    end_stream: bool = False) -> Stream:
        """A new stream whose request begins with ``headers``; send its body with send_data
        (end_stream=True on the last part) unless ``end_stream`` ends it here."""
        stream = self._new_stream(handler)
        # encoded now, as sent: the encoder's dynamic table follows the order of the blocks
        self._table_size_update_due = False  # the block begins with it if one was due
        self.send_headers(stream, self._encoder.encode(headers), end_stream)
        return stream

    def open_stream_encoded(self, block: bytes, handler: ResponseHandler,
                            end_stream: bool = False) -> Stream:
        """As open_stream, with a header block encoded beforehand. The block must leave the
        dynamic table alone (static indexes and literals without indexing only, as
        ``Encoder(0)`` writes them): then it means the same whatever the table holds."""
        stream = self._new_stream(handler)
        if self._table_size_update_due:
            # a size update must open the first block after the peer's SETTINGS changed it
            self._table_size_update_due = False
            block = self._encoder.encode(()) + block
        self.send_headers(stream, block, end_stream)
        return stream

    def open_request(self, block: bytes, handler: ResponseHandler, prefix: bytes,
                     body: bytes) -> Stream:
        """A whole request on a new stream: a header block as open_stream_encoded takes it,
        then ``prefix + body`` as its DATA, ending the stream. One write of HEADERS and DATA
        when they fit the windows and a frame each (a unary gRPC call's usual case), the
        body never copied to put the prefix in front; else as send_data would."""
        stream = self._new_stream(handler)
        if self._table_size_update_due:
            self._table_size_update_due = False
            block = self._encoder.encode(()) + block
        n = len(prefix) + len(body)
        limit = self.peer_max_frame
        if n <= self._conn_send_window and n <= stream.send_window and n <= limit and len(block) <= limit:
            self._conn_send_window -= n
            stream.send_window -= n
            self._sent_since_ping = True
            sid = stream.id
            self._write(b"".join((f.frame_header(f.HEADERS, f.END_HEADERS, sid, len(block)), block,
                                  f.frame_header(f.DATA, f.END_STREAM, sid, n), prefix, body)))
            self._close_local(stream)
        else:
            self.send_headers(stream, block)
            self.send_data(stream, prefix)
            self.send_data(stream, body, end_stream=True)
        return stream

    def _new_stream(self, handler: ResponseHandler) -> Stream:
        if self._closed or self._going_away:
            raise ConnectionError("the HTTP/2 connection is closed or going away")
        sid = self._next_stream_id
        self._next_stream_id = sid + 2
        stream = Stream(sid, self._peer_initial_window)
        stream.handler = handler
        self.streams[sid] = stream
        return stream

    def _headers_on_stream(self, stream: Stream, headers: Headers, end_stream: bool) -> None:
        handler = cast(ResponseHandler, stream.handler)  # open_stream took a ResponseHandler
        handler.headers(headers, end_stream)
        if end_stream and self.streams.get(stream.id) is stream:  # not reset by the handler
            self._remote_ended(stream, handler)

    def _headers_opening_stream(self, sid: int, headers: Headers, end_stream: bool) -> None:
        if self._idle(sid):
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "HEADERS on a stream we did not open")
        # one of ours that we reset or that ended: what crossed that is ignored (§5.1)

    def _on_peer_header_table_size(self, size: int) -> None:
        self._encoder.set_max_table_size(size)
        self._table_size_update_due = True
