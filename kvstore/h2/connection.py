"""One HTTP/2 connection (RFC 9113) as an asyncio protocol, either side: frames in, frames out.

It owns what is per connection whatever the role: the SETTINGS exchange, HPACK decoding, PING
answers, stream states, RST_STREAM and GOAWAY, and flow control both ways. Received DATA is
acknowledged as it is consumed (so peers never stall); DATA sent waits for window, per stream and
per connection, so a slow reader holds back only its own stream. Frames queued in one turn of the
event loop go out in one write.

Input is taken in turns, so one connection cannot keep the event loop from the others: each
turn processes frames up to a budget (a frame costs 1, opening a stream more, payload by the
KiB), then reading pauses until the loop has gone round; frames parsed but not processed wait
their turn. On a server, input also stops while the transport's write buffer is full: a peer
that does not read what it asked for gets nothing more processed.
A stream whose handler has a backlog is held by flow control alone (``hold_stream``): no window
goes back for it, while the rest of the connection goes on.

A role subclasses it (the server's H2ServerConnection, client.H2ClientConnection) and says what
a header block means: a new stream, a response, trailers. What a stream carries is the business
of its handler (stream.StreamHandler).
"""
from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from . import frames as f
from .config import H2Configuration
from .frame_reader_select import FrameReader, grpc_data_frames, response_frames
from .hpack_select import Decoder, HPACKError
from .settings import ACK_THRESHOLD, OUR_MAX_FRAME, OUR_MAX_HEADER_LIST, our_settings
from .stream import Stream, StreamHandler

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]

TURN_BUDGET = 4096  # work units one connection may take per turn of the event loop
TURN_OUTPUT = 1 << 20  # bytes of frames queued in a turn past which its input waits for the next
OPEN_STREAM_COST = 16  # a HEADERS frame: a stream opened (a handler, maybe a task)


class H2Connection(asyncio.Protocol, ABC):
    # A server takes no more requests from a peer that does not read its answers. A client must
    # not do the same (it would stop reading answers while its requests wait to be written,
    # and a server doing the first would never drain them: neither side would move).
    hold_input_while_writes_wait = False

    def __init__(self, config: H2Configuration):
        self.client_side = config.client_side
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()  # a server's, before the client's preface
        self._reader = FrameReader(OUR_MAX_FRAME)
        # Only a server waits for a preface; a client sends its own and reads frames at once.
        self._preface_seen = config.client_side
        self._decoder = Decoder(max_table_size=4096, max_header_list_size=OUR_MAX_HEADER_LIST)
        self.streams: dict[int, Stream] = {}
        self._last_stream_id = 0  # the highest stream the peer opened (GOAWAY names it)
        self._our_parity = 1 if config.client_side else 0  # stream ids we open are odd or even
        self._next_stream_id = 2 - self._our_parity  # the next one we open
        self._conn_send_window = f.DEFAULT_WINDOW
        self._conn_recv_unacked = 0
        self._peer_initial_window = f.DEFAULT_WINDOW
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self._headers_sid = 0  # stream whose header block is being continued, or 0
        self._headers_flags = 0
        self._headers_buf = bytearray()
        self._headers_frames = 0  # frames of the header block being continued
        self._blocked: dict[int, Stream] = {}  # streams with DATA waiting for window
        self._write_paused = False
        self._write_waiters: list[asyncio.Future] = []
        # Frames queued in this turn of the loop, written together by _flush (scheduled once):
        # the responses a group commit completes become one send per connection.
        self._out: list[bytes] = []
        self._flush_due = False  # a _flush is scheduled
        # what runs right before the next _flush writes (before_flush)
        self._before_flush: list[Callable[[], None]] = []
        self._out_bytes = 0
        self._out_views = False  # _out holds views of large payloads (see _write_views)
        self._going_away = False
        self._closed = False
        self.lost_reason: Exception | None = None  # why the socket went, if not a clean close
        self._sent_since_ping = False  # for a role's ping policy
        # Input taken in turns (see the module docstring).
        self._budget = TURN_BUDGET
        self._input_held = False  # a server's, while its writes wait (see pause_writing)
        self._held: tuple[list, int, Exception | None] | None = None  # parsed, not processed
        self._reading_paused = False
        self._turn_scheduled = False
        self.loop = asyncio.get_event_loop()

    # -- what a role says ----------------------------------------------------------------------

    @abstractmethod
    def _headers_on_stream(self, stream: Stream, headers: Headers, end_stream: bool) -> None:
        """A header block on an open stream: a response's headers, or trailers."""

    @abstractmethod
    def _headers_opening_stream(self, sid: int, headers: Headers, end_stream: bool) -> None:
        """A header block on a stream we do not know (odd, so the client's: a server opens it)."""

    def _on_ping(self) -> None:
        """A PING from the peer, just before we answer it."""

    def _on_peer_header_table_size(self, size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE, for an encoder that indexes."""

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.client_side:
            self._write(f.PREFACE + our_settings())

    def _transport(self) -> asyncio.Transport:
        transport = self.transport
        assert transport is not None  # asyncio calls connection_made before anything else
        return transport

    def connection_lost(self, exc) -> None:
        self._closed = True
        self.lost_reason = exc  # before the handlers hear of it: they may say why
        for stream in list(self.streams.values()):
            self._reset_handler(stream)
        self.streams.clear()
        for fut in self._write_waiters:
            if not fut.done():
                fut.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._input_held = self.hold_input_while_writes_wait

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._input_held:
            self._input_held = False
            if self._held is not None or self._reading_paused:
                self._next_turn()
        waiters, self._write_waiters = self._write_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            if not self._preface_seen:
                rest = self._receive_preface(data)
                if rest is None:
                    return
                data = rest
            frames, error = self._reader.feed(data)
        except f.ConnectionError_ as e:
            self._fail(e.code, str(e))
            return
        if self._held is not None:  # came before the pause took effect: after what waits
            held, start, held_error = self._held
            if held_error is None:
                self._held = (held[start:] + frames, 0, error)
            return
        self._process(frames, 0, error)

    def _process(self, frames: list, i: int, error: Exception | None) -> None:
        try:
            n = len(frames)
            while i < n:
                # (_turn_over, inline: this runs for every frame)
                if self._input_held or self._budget <= 0 or self._out_bytes > TURN_OUTPUT:
                    self._hold_input(frames, i, error)
                    self._send_window_updates()
                    return
                ftype, flags, sid, payload = frames[i]
                i += 1
                self._budget -= 1 + (len(payload) >> 10) + (OPEN_STREAM_COST if ftype == f.HEADERS else 0)
                try:
                    self._frame(ftype, flags, sid, payload)
                except f.StreamError as e:
                    self._reset(e.stream_id, e.code)
                if self._closed:
                    return
            if error is not None:
                raise error
            self._send_window_updates()
            if self._turn_over():  # read no more this turn
                self._hold_input([], 0, None)
        except f.ConnectionError_ as e:
            self._fail(e.code, str(e))
        except HPACKError as e:
            self._fail(f.COMPRESSION_ERROR, f"hpack: {e}")

    # -- input in turns ------------------------------------------------------------------------

    def hold_stream(self, stream: Stream) -> None:
        """The stream's handler takes no more for now: flow control holds its peer back (no
        window is given back for it), while the connection's other frames go on."""
        stream.recv_held = True

    def release_stream(self, stream: Stream) -> None:
        stream.recv_held = False
        self._conn_recv_unacked += stream.held_conn_bytes
        stream.held_conn_bytes = 0
        if not self._closed:
            self._send_window_updates()

    def spend(self, units: int) -> None:
        """Work a handler did for this connection's input beyond reading it (a message
        inflated, say): it counts against the turn's budget."""
        self._budget -= units

    def _turn_over(self) -> bool:
        """No more input now: the budget is spent, the turn queued a lot of output, or the
        input waits for the writes."""
        return self._input_held or self._budget <= 0 or self._out_bytes > TURN_OUTPUT

    def _hold_input(self, frames: list, i: int, error: Exception | None) -> None:
        self._held = (frames, i, error) if i < len(frames) or error is not None else None
        if not self._reading_paused and not self._closed:
            self._reading_paused = True
            self._transport().pause_reading()
        if not self._input_held:  # else resume_writing starts the next turn
            self._next_turn()

    def _next_turn(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self.loop.call_soon(self._resume_input)

    def _resume_input(self) -> None:
        self._turn_scheduled = False
        self._budget = TURN_BUDGET
        if self._closed or self._input_held:
            return
        held, self._held = self._held, None
        if held is not None:
            self._process(*held)
        if self._held is None and self._reading_paused and not self._closed and not self._input_held:
            self._reading_paused = False
            self._transport().resume_reading()

    def _receive_preface(self, data: bytes) -> bytes | None:
        """A server's: gathers the client's preface, then sends our SETTINGS. Returns what
        follows the preface, or None while it is incomplete."""
        buf = self._buf
        buf += data
        if len(buf) < len(f.PREFACE):
            if not f.PREFACE.startswith(bytes(buf)):
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad connection preface")
            return None
        if buf[:len(f.PREFACE)] != f.PREFACE:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad connection preface")
        self._preface_seen = True
        self._write(our_settings())
        rest = bytes(buf[len(f.PREFACE):])
        self._buf = bytearray()
        return rest

    # -- frames in -----------------------------------------------------------------------------

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self._headers_sid and (ftype != f.CONTINUATION or sid != self._headers_sid):
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "expected CONTINUATION")
        if ftype == f.DATA:
            self._on_data(flags, sid, payload)
        elif ftype == f.HEADERS:
            self._on_headers(flags, sid, payload)
        elif ftype == f.CONTINUATION:
            if not self._headers_sid:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
            self._headers_buf += payload
            # each frame counts with its header: a flood of empty CONTINUATIONs ends here too
            self._headers_frames += 1
            if len(self._headers_buf) + 9 * self._headers_frames > OUR_MAX_HEADER_LIST * 2:
                raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, "header block too large")
            if flags & f.END_HEADERS:
                sid, self._headers_sid = self._headers_sid, 0
                self._header_block(sid, self._headers_flags, bytes(self._headers_buf))
        elif ftype == f.SETTINGS:
            self._on_settings(flags, sid, payload)
        elif ftype == f.WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif ftype == f.PING:
            if sid != 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "PING payload is not 8 bytes")
            if not flags & f.ACK:
                self._on_ping()
                self._write(f.ping_ack(payload))
        elif ftype == f.RST_STREAM:
            if sid == 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if len(payload) != 4:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "RST_STREAM payload is not 4 bytes")
            if self._idle(sid):
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            stream = self.streams.pop(sid, None)
            if stream is not None:
                self._blocked.pop(sid, None)
                self._reset_handler(stream)
        elif ftype == f.GOAWAY:
            self._going_away = True
        elif ftype == f.PRIORITY:
            if sid == 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                raise f.StreamError(sid, f.FRAME_SIZE_ERROR, "PRIORITY payload is not 5 bytes")
        elif ftype == f.PUSH_PROMISE:
            # a client may not push; a server may not either, as we announce ENABLE_PUSH 0
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "PUSH_PROMISE from a client"
                                     if not self.client_side else "PUSH_PROMISE with push disabled")
        # unknown frame types are ignored (§4.1)

    def _idle(self, sid: int) -> bool:
        """Whether stream ``sid`` was never opened, by either side (§5.1)."""
        if sid & 1 == self._our_parity:
            return sid >= self._next_stream_id
        return sid > self._last_stream_id

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        # Header blocks come on odd streams only, either way: even ones are a server's pushes,
        # which we never allow.
        if sid == 0 or sid % 2 == 0:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "HEADERS on an invalid stream id")
        start, end = 0, len(payload)
        if flags & f.PADDED:
            if not payload:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "missing pad length")
            start = 1
            end -= payload[0]
        if flags & f.PRIORITY_FLAG:
            start += 5
        if start > end:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "padding exceeds the frame")
        block = payload[start:end]
        if flags & f.END_HEADERS:
            self._header_block(sid, flags, block)
        else:
            self._headers_sid = sid
            self._headers_flags = flags
            self._headers_buf = bytearray(block)
            self._headers_frames = 1

    def _header_block(self, sid: int, flags: int, block: bytes) -> None:
        headers = self._decoder.decode(block)  # always decoded: the HPACK state is shared
        end_stream = bool(flags & f.END_STREAM)
        stream = self.streams.get(sid)
        if stream is None:
            self._headers_opening_stream(sid, headers, end_stream)
            return
        if stream.remote_closed:
            raise f.StreamError(sid, f.STREAM_CLOSED, "HEADERS after END_STREAM")
        self._headers_on_stream(stream, headers, end_stream)

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._conn_recv_unacked += size  # flow control counts the whole frame, padding too
        stream = self.streams.get(sid)
        if stream is None:
            if self._idle(sid):
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream we answered and reset: its in-flight DATA is ignored (§5.4.2)
        if stream.remote_closed:
            raise f.StreamError(sid, f.STREAM_CLOSED, "DATA after END_STREAM")
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise f.StreamError(sid, f.FLOW_CONTROL_ERROR, "stream window exceeded")
        stream.recv_unacked += size
        if stream.recv_held:  # its connection window comes back when the handler takes it
            self._conn_recv_unacked -= size
            stream.held_conn_bytes += size
        if flags & f.PADDED:
            if not payload or payload[0] >= size:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad DATA padding")
            payload = payload[1:size - payload[0]]
        handler = stream.handler  # the stream lets go of it if this data ends the call
        assert handler is not None  # an open stream's handler is made
        if payload:
            handler.data(payload)
        if flags & f.END_STREAM:
            self._remote_ended(stream, handler)

    def _remote_ended(self, stream: Stream, handler: StreamHandler) -> None:
        """The peer sent END_STREAM. A stream we have finished too (a client's, its request
        sent) ends with it; a server's answers after this, and ends then."""
        stream.remote_closed = True
        handler.end_of_stream()
        if stream.closed:
            self._forget(stream)

    def _send_window_updates(self) -> None:
        out = []
        if self._conn_recv_unacked >= ACK_THRESHOLD:
            out.append(f.window_update(0, self._conn_recv_unacked))
            self._conn_recv_unacked = 0
        for stream in self.streams.values():
            if stream.recv_unacked >= ACK_THRESHOLD and not stream.remote_closed and not stream.recv_held:
                out.append(f.window_update(stream.id, stream.recv_unacked))
                stream.recv_window += stream.recv_unacked
                stream.recv_unacked = 0
        if out and not self._closed:
            self._write(b"".join(out))

    def _on_settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid != 0:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        for key, value in f.parse_settings(payload):
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise f.ConnectionError_(f.PROTOCOL_ERROR, "invalid SETTINGS_MAX_FRAME_SIZE")
                self.peer_max_frame = value
            elif key == f.ENABLE_PUSH and value > 1:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "invalid SETTINGS_ENABLE_PUSH")
            elif key == f.HEADER_TABLE_SIZE:
                self._on_peer_header_table_size(value)
        self._write(f.SETTINGS_ACK)
        self._flush_blocked()

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 bytes")
        inc = f.unpack_u32(payload) & 0x7FFF_FFFF
        if sid == 0:
            if inc == 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "zero WINDOW_UPDATE")
            self._conn_send_window += inc
            if self._conn_send_window > f.MAX_WINDOW:
                raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "connection window overflow")
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return  # a closed stream's update may cross its reset
            if inc == 0:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, "zero WINDOW_UPDATE")
            stream.send_window += inc
            if stream.send_window > f.MAX_WINDOW:
                raise f.StreamError(sid, f.FLOW_CONTROL_ERROR, "stream window overflow")
        self._flush_blocked()

    # -- frames out ----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self._flush)
        self._out.append(data)
        self._out_bytes += len(data)

    def _write_views(self, parts: list) -> None:
        """Frames whose payloads are views of a large message: written with what is pending,
        in order, by writelines (the transport keeps the views; nothing is joined)."""
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self._flush)
        self._out.extend(parts)
        self._out_bytes += sum(map(len, parts))
        self._out_views = True

    def before_flush(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs right before this turn's write to the socket (one is scheduled
        if none is yet): what it sends goes out in that same write."""
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self._flush)
        self._before_flush.append(callback)

    def _flush(self) -> None:
        if self._before_flush:
            callbacks, self._before_flush = self._before_flush, []
            for callback in callbacks:
                callback()
        self._flush_due = False
        out = self._out
        if out and not self._closed:
            transport = self._transport()
            if self._out_views:
                transport.writelines(out)
            else:
                transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        self._out_bytes = 0
        self._out_views = False

    def send_headers(self, stream: Stream, block: bytes, end_stream: bool = False) -> None:
        """A header block (already HPACK-encoded); trailers wait behind pending DATA."""
        if stream.closed or self._closed:
            return
        if end_stream and stream.pending:
            stream.pending_trailers = block
            return
        self._sent_since_ping = True
        self._write(self._header_frames(stream.id, block, end_stream))
        if end_stream:
            self._close_local(stream)

    def send_response(self, stream: Stream, head: bytes, prefix: bytes, body: bytes,
                      trailers: bytes) -> None:
        """A whole message with trailers (a unary gRPC response), its DATA being ``prefix +
        body``: one write when it fits the windows and one frame; else frames cut from ``body``
        itself (never copied whole just to put the few prefix bytes in front)."""
        if stream.closed or self._closed:
            return
        n = len(prefix) + len(body)
        sid = stream.id
        if (not stream.pending and n <= self._conn_send_window and n <= stream.send_window
                and n <= self.peer_max_frame and len(head) + len(trailers) <= self.peer_max_frame):
            self._conn_send_window -= n
            stream.send_window -= n
            self._sent_since_ping = True
            self._write(response_frames(sid, head, prefix, body, trailers))
            self._close_local(stream)
            return
        self.send_headers(stream, head)
        self.send_data(stream, prefix)
        self.send_data(stream, body)
        self.send_headers(stream, trailers, end_stream=True)

    def _header_frames(self, sid: int, block: bytes, end_stream: bool) -> bytes:
        limit = self.peer_max_frame
        flags = f.END_STREAM if end_stream else 0
        if len(block) <= limit:
            return f.frame(f.HEADERS, flags | f.END_HEADERS, sid, block)
        parts = [f.frame(f.HEADERS, flags, sid, block[:limit])]
        for i in range(limit, len(block), limit):
            last = i + limit >= len(block)
            parts.append(f.frame(f.CONTINUATION, f.END_HEADERS if last else 0, sid, block[i:i + limit]))
        return b"".join(parts)

    def send_data(self, stream: Stream, data: bytes, end_stream: bool = False) -> bool:
        """Sends as much as the windows allow now; the rest goes out on WINDOW_UPDATE.
        Returns True if everything was written."""
        if stream.closed or self._closed:
            return True
        if stream.pending:
            stream.pending.append(data)
            stream.pending_end = stream.pending_end or end_stream
            return False
        rest = self._write_data(stream, data, end_stream)
        if rest is None:
            return True
        stream.pending.append(rest)
        stream.pending_end = end_stream
        self._blocked[stream.id] = stream
        return False

    def send_grpc_messages(self, stream: Stream, messages: list[bytes], size: int) -> bool:
        """Consecutive gRPC messages (uncompressed) as DATA, ``size`` being their bytes with
        the 5-byte prefixes: its frames built at once when they fit the windows, else as
        send_data. Returns True if everything was written."""
        if (size <= self._conn_send_window and size <= stream.send_window
                and not stream.pending and not stream.closed and not self._closed):
            self._conn_send_window -= size
            stream.send_window -= size
            self._sent_since_ping = True
            self._write(grpc_data_frames(stream.id, messages, size, self.peer_max_frame))
            return True
        return self.send_data(stream, f.grpc_payload(messages))  # cut to the windows and frames

    def _write_data(self, stream: Stream, data, end_stream: bool):
        """Writes what fits; returns the unsent remainder or None."""
        size = len(data)
        allowed = min(self._conn_send_window, stream.send_window)
        limit = self.peer_max_frame
        large = size > limit
        if large and type(data) is not memoryview:
            # A large payload goes out as views of itself, each after its frame header, to the
            # transport's writelines: never copied here, however many windows it takes.
            data = memoryview(data)
        out = []
        pos = 0
        while pos < size and allowed > 0:
            n = min(size - pos, allowed, limit)
            flags = f.END_STREAM if (pos + n == size and end_stream) else 0
            if large:
                out.append(f.frame_header(f.DATA, flags, stream.id, n))
                out.append(data[pos:pos + n])
            else:
                out.append(f.frame(f.DATA, flags, stream.id, data[pos:pos + n]))
            pos += n
            allowed -= n
        if size == 0 and end_stream:
            out.append(f.frame(f.DATA, f.END_STREAM, stream.id))
        sent = pos
        self._conn_send_window -= sent
        stream.send_window -= sent
        if out:
            self._sent_since_ping = True
            if large:
                self._write_views(out)
            else:
                self._write(b"".join(out))
        if pos < size:
            return data[pos:]
        if end_stream:
            self._close_local(stream)
        return None

    def _flush_blocked(self) -> None:
        for sid, stream in list(self._blocked.items()):
            if self._conn_send_window <= 0:
                break
            while stream.pending:
                data = stream.pending.popleft()
                end = stream.pending_end and not stream.pending
                rest = self._write_data(stream, data, end)
                if rest is not None:
                    stream.pending.appendleft(rest)
                    break
            if not stream.pending:
                self._blocked.pop(sid, None)  # gone already if its END_STREAM just went out
                if stream.pending_trailers is not None:
                    block, stream.pending_trailers = stream.pending_trailers, None
                    self._write(self._header_frames(stream.id, block, True))
                    self._close_local(stream)
                if stream.drained is not None and not stream.drained.done():
                    stream.drained.set_result(None)

    def output_waiting(self) -> bool:
        """More than a turn's worth of frames is queued for the next write."""
        return self._out_bytes > TURN_OUTPUT

    async def writable(self, stream: Stream) -> None:
        """Waits until the stream has no DATA waiting for window and the socket takes more
        (and what this turn queued has been handed to it)."""
        if self._out_bytes > TURN_OUTPUT:
            await asyncio.sleep(0)  # the flush scheduled with the first frame runs first
        while stream.pending and not stream.closed and not self._closed:
            stream.drained = self.loop.create_future()
            await stream.drained
        if self._write_paused and not self._closed:
            fut = self.loop.create_future()
            self._write_waiters.append(fut)
            await fut

    # -- stream ends ---------------------------------------------------------------------------

    def _close_local(self, stream: Stream) -> None:
        """We sent END_STREAM."""
        stream.closed = True
        if not stream.remote_closed:
            if self.client_side:
                self._blocked.pop(stream.id, None)
                return  # half-closed (local): the stream ends with the response
            if not self._closed:
                # a server answered before the request ended: ask the client to stop (§8.1)
                self._write(f.rst_stream(stream.id, f.NO_ERROR))
        self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        """The stream is over, both ways."""
        stream.closed = True
        stream.handler = None  # handler and stream refer to each other: no cycle for the GC
        if self.streams.pop(stream.id, None) is None:
            return  # forgotten already (answered while told of the peer's END_STREAM)
        self._blocked.pop(stream.id, None)
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        if self._going_away and not self.streams:
            self._flush()
            self._transport().close()

    def reset_stream(self, stream: Stream, code: int) -> None:
        self._reset(stream.id, code)

    def _reset(self, sid: int, code: int) -> None:
        stream = self.streams.pop(sid, None)
        self._blocked.pop(sid, None)
        if stream is not None:
            stream.closed = True
            self._reset_handler(stream)
        if not self._closed:
            self._write(f.rst_stream(sid, code))

    @staticmethod
    def _reset_handler(stream: Stream) -> None:
        stream.closed = True
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        handler, stream.handler = stream.handler, None
        if handler is not None:
            handler.cancel()

    def _fail(self, code: int, message: str) -> None:
        log.debug("http2 connection error %d: %s", code, message)
        if not self._closed:
            # like grpc-go, the debug data of ENHANCE_YOUR_CALM is the bare reason
            self._write(f.goaway(self._last_stream_id, code, message.encode()[:256]))
            self._flush()
            self._transport().close()
        self._closed = True

    def goaway(self) -> None:
        """Graceful shutdown: no new streams; close once the open ones are done."""
        if self._closed:
            return
        self._going_away = True
        self._write(f.goaway(self._last_stream_id, f.NO_ERROR))
        if not self.streams:
            self._flush()
            self._transport().close()

    def abort(self) -> None:
        if not self._closed:
            self._transport().abort()
