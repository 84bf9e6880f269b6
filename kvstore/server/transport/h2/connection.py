"""One HTTP/2 server connection (RFC 9113) as an asyncio protocol: frames in, frames out.

It owns what is per connection: the preface and SETTINGS exchange, HPACK decoding, stream
states, and flow control both ways. Received DATA is acknowledged as it is consumed (so
clients never stall); DATA sent waits for window, per stream and per connection, so a slow
reader holds back only its own stream. What a stream carries is the business of a handler
object made by ``handler_factory(conn, stream, headers)`` (gRPC calls, see grpc_call.py).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from . import frames as f
from .frame_reader_select import FrameReader
from .hpack_select import Decoder, HPACKError

log = logging.getLogger(__name__)

# What we announce. Large windows: a client may send a whole request without waiting for us.
OUR_INITIAL_WINDOW = 4 * 1024 * 1024
OUR_CONNECTION_WINDOW = 16 * 1024 * 1024
OUR_MAX_FRAME = 1024 * 1024
OUR_MAX_CONCURRENT_STREAMS = 10_000
OUR_MAX_HEADER_LIST = 64 * 1024
# Window updates are sent once this much of a window has been consumed.
_ACK_THRESHOLD = 64 * 1024
# Keepalive enforcement as etcd configures grpc-go: pings closer than MIN_PING_INTERVAL apart
# (2 h with no open stream) are strikes unless we sent something in between; past
# MAX_PING_STRIKES the connection gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
MIN_PING_INTERVAL = 5.0
IDLE_PING_INTERVAL = 2 * 3600.0
MAX_PING_STRIKES = 2


class StreamHandler(Protocol):
    """What ``handler_factory`` makes for a stream (grpc_call.GrpcCall)."""

    def data(self, payload: bytes) -> None: ...
    def end_of_requests(self) -> None: ...
    def cancel(self) -> None: ...


class Stream:
    __slots__ = ("id", "send_window", "recv_window", "recv_unacked", "handler", "remote_closed",
                 "closed", "pending", "pending_end", "pending_trailers", "drained")

    def __init__(self, stream_id: int, send_window: int):
        self.id = stream_id
        self.send_window = send_window
        self.recv_window = OUR_INITIAL_WINDOW
        self.recv_unacked = 0
        self.handler: StreamHandler | None = None  # set once made; None once the stream ends
        self.remote_closed = False
        self.closed = False
        self.pending: deque[bytes] = deque()  # DATA payload waiting for window
        self.pending_end = False  # END_STREAM goes with the last pending DATA
        self.pending_trailers: bytes | None = None  # a header block to send after the data
        self.drained: asyncio.Future | None = None


_HTTP1_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ")
_HTTP1_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
                  503: "Service Unavailable"}


class H2Connection(asyncio.Protocol):
    def __init__(self, handler_factory, on_close=None, http1=None):
        self._handler_factory = handler_factory
        self._on_close = on_close
        self._http1 = http1  # (method, path) -> (status, content type, body), as etcd's cmux
        self._http1_mode = False
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()  # before the preface only (and for HTTP/1.1 requests)
        self._reader = FrameReader(OUR_MAX_FRAME)
        self._preface_seen = False
        self._decoder = Decoder(max_table_size=4096, max_header_list_size=OUR_MAX_HEADER_LIST)
        self.streams: dict[int, Stream] = {}
        self._last_stream_id = 0
        self._conn_send_window = f.DEFAULT_WINDOW
        self._conn_recv_unacked = 0
        self._peer_initial_window = f.DEFAULT_WINDOW
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self._headers_sid = 0  # stream whose header block is being continued, or 0
        self._headers_flags = 0
        self._headers_buf = bytearray()
        self._blocked: dict[int, Stream] = {}  # streams with DATA waiting for window
        self._write_paused = False
        self._write_waiters: list[asyncio.Future] = []
        # Frames queued in this turn of the loop, written together by _flush (scheduled once):
        # the responses a group commit completes become one send per connection.
        self._out: list[bytes] = []
        self._out_views = False  # _out holds views of large payloads (see _write_views)
        self._going_away = False
        self._closed = False
        self._last_ping = float("-inf")
        self._ping_strikes = 0
        self._sent_since_ping = False
        self.loop = asyncio.get_event_loop()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def _transport(self) -> asyncio.Transport:
        transport = self.transport
        assert transport is not None  # asyncio calls connection_made before anything else
        return transport

    def _send_preface(self) -> None:
        """Our SETTINGS, once the client's preface shows this is HTTP/2 (not HTTP/1.1)."""
        self._write(f.settings({
            f.MAX_CONCURRENT_STREAMS: OUR_MAX_CONCURRENT_STREAMS,
            f.INITIAL_WINDOW_SIZE: OUR_INITIAL_WINDOW,
            f.MAX_FRAME_SIZE: OUR_MAX_FRAME,
            f.MAX_HEADER_LIST_SIZE: OUR_MAX_HEADER_LIST,
            f.ENABLE_PUSH: 0,
        }) + f.window_update(0, OUR_CONNECTION_WINDOW - f.DEFAULT_WINDOW))

    def connection_lost(self, exc) -> None:
        self._closed = True
        for stream in list(self.streams.values()):
            self._reset_handler(stream)
        self.streams.clear()
        for fut in self._write_waiters:
            if not fut.done():
                fut.set_result(None)
        if self._on_close is not None:
            self._on_close(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._write_waiters = self._write_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._http1_mode:
            self._buf += data
            self._http1_request()
            return
        try:
            if not self._preface_seen:
                buf = self._buf
                buf += data
                if self._http1 is not None and bytes(buf[:8]).startswith(_HTTP1_METHODS):
                    self._http1_mode = True
                    self._http1_request()
                    return
                if len(buf) < len(f.PREFACE):
                    if not f.PREFACE.startswith(bytes(buf)):
                        raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad connection preface")
                    return
                if buf[:len(f.PREFACE)] != f.PREFACE:
                    raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad connection preface")
                self._preface_seen = True
                self._send_preface()
                data = bytes(buf[len(f.PREFACE):])
                self._buf = bytearray()
            frames, error = self._reader.feed(data)
            for ftype, flags, sid, payload in frames:
                try:
                    self._frame(ftype, flags, sid, payload)
                except f.StreamError as e:
                    self._reset(e.stream_id, e.code)
                if self._closed:
                    return
            if error is not None:
                raise error
            self._send_window_updates()
        except f.ConnectionError_ as e:
            self._fail(e.code, str(e))
        except HPACKError as e:
            self._fail(f.COMPRESSION_ERROR, f"hpack: {e}")

    def _http1_request(self) -> None:
        """One plain HTTP/1.1 request on the client port (/health, /version, /metrics)."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 16384:
                self._transport().close()
            return
        request_line = bytes(buf[:buf.find(b"\r\n")]).decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            status, ctype, body = 400, "text/plain; charset=utf-8", b"Bad Request\n"
            method = "GET"
        else:
            method, path, _version = parts
            status, ctype, body = self._http1(method, path)
        head = (f"HTTP/1.1 {status} {_HTTP1_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n").encode("latin-1")
        transport = self._transport()
        transport.write(head if method == "HEAD" else head + body)
        transport.close()
        del buf[:]

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
            if len(self._headers_buf) > OUR_MAX_HEADER_LIST * 2:
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
                self._police_ping()
                self._write(f.ping_ack(payload))
        elif ftype == f.RST_STREAM:
            if sid == 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if len(payload) != 4:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "RST_STREAM payload is not 4 bytes")
            if sid > self._last_stream_id:
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
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # unknown frame types are ignored (§4.1)

    def _police_ping(self) -> None:
        now = self.loop.time()
        last, self._last_ping = self._last_ping, now
        if self._sent_since_ping:
            self._sent_since_ping = False
            self._ping_strikes = 0
            return
        min_gap = MIN_PING_INTERVAL if self.streams else IDLE_PING_INTERVAL
        if now - last < min_gap:
            self._ping_strikes += 1
            if self._ping_strikes > MAX_PING_STRIKES:
                raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, "too_many_pings")

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
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

    def _header_block(self, sid: int, flags: int, block: bytes) -> None:
        headers = self._decoder.decode(block)  # always decoded: the HPACK state is shared
        end_stream = bool(flags & f.END_STREAM)
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client
            if stream.remote_closed:
                raise f.StreamError(sid, f.STREAM_CLOSED, "HEADERS after END_STREAM")
            if not end_stream:
                raise f.StreamError(sid, f.PROTOCOL_ERROR, "trailers without END_STREAM")
            stream.remote_closed = True
            assert stream.handler is not None  # an open stream's handler is made
            stream.handler.end_of_requests()
            return
        if sid <= self._last_stream_id:
            raise f.ConnectionError_(f.STREAM_CLOSED, "HEADERS on a closed stream")
        self._last_stream_id = sid
        if self._going_away:
            self._write(f.rst_stream(sid, f.REFUSED_STREAM))
            return
        if len(self.streams) >= OUR_MAX_CONCURRENT_STREAMS:
            raise f.StreamError(sid, f.REFUSED_STREAM, "too many concurrent streams")
        stream = Stream(sid, self._peer_initial_window)
        self.streams[sid] = stream
        stream.remote_closed = end_stream
        handler = self._handler_factory(self, stream, headers)
        if stream.closed:  # answered at once (an error): no handler to keep
            return
        stream.handler = handler
        if end_stream:
            handler.end_of_requests()

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._conn_recv_unacked += size  # flow control counts the whole frame, padding too
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self._last_stream_id:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream we answered and reset: its in-flight DATA is ignored (§5.4.2)
        if stream.remote_closed:
            raise f.StreamError(sid, f.STREAM_CLOSED, "DATA after END_STREAM")
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise f.StreamError(sid, f.FLOW_CONTROL_ERROR, "stream window exceeded")
        stream.recv_unacked += size
        if flags & f.PADDED:
            if not payload or payload[0] >= size:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "bad DATA padding")
            payload = payload[1:size - payload[0]]
        handler = stream.handler  # the stream lets go of it if this data ends the call
        assert handler is not None  # an open stream's handler is made
        if payload:
            handler.data(payload)
        if flags & f.END_STREAM:
            stream.remote_closed = True
            handler.end_of_requests()

    def _send_window_updates(self) -> None:
        out = []
        if self._conn_recv_unacked >= _ACK_THRESHOLD:
            out.append(f.window_update(0, self._conn_recv_unacked))
            self._conn_recv_unacked = 0
        for stream in self.streams.values():
            if stream.recv_unacked >= _ACK_THRESHOLD and not stream.remote_closed:
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
            # HEADER_TABLE_SIZE concerns our encoder: our header blocks never index, so any
            # size the client allows is fine.
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
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(data)

    def _write_views(self, parts: list) -> None:
        """Frames whose payloads are views of a large response: written with what is pending,
        in order, by writelines (the transport keeps the views; nothing is joined)."""
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.extend(parts)
        self._out_views = True

    def _flush(self) -> None:
        out = self._out
        if out and not self._closed:
            transport = self._transport()
            if self._out_views:
                transport.writelines(out)
            else:
                transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
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
        """A whole unary response, its DATA being ``prefix + body``: one write when it fits
        the windows and one frame; else frames cut from ``body`` itself (never copied whole
        just to put the few prefix bytes in front)."""
        if stream.closed or self._closed:
            return
        n = len(prefix) + len(body)
        sid = stream.id
        if (not stream.pending and n <= self._conn_send_window and n <= stream.send_window
                and n <= self.peer_max_frame and len(head) + len(trailers) <= self.peer_max_frame):
            self._conn_send_window -= n
            stream.send_window -= n
            self._sent_since_ping = True
            self._write(f.frame(f.HEADERS, f.END_HEADERS, sid, head)
                        + f.frame(f.DATA, 0, sid, prefix + body)
                        + f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, sid, trailers))
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
                del self._blocked[sid]
                if stream.pending_trailers is not None:
                    block, stream.pending_trailers = stream.pending_trailers, None
                    self._write(self._header_frames(stream.id, block, True))
                    self._close_local(stream)
                if stream.drained is not None and not stream.drained.done():
                    stream.drained.set_result(None)

    async def writable(self, stream: Stream) -> None:
        """Waits until the stream has no DATA waiting for window and the socket takes more."""
        while stream.pending and not stream.closed and not self._closed:
            stream.drained = self.loop.create_future()
            await stream.drained
        if self._write_paused and not self._closed:
            fut = self.loop.create_future()
            self._write_waiters.append(fut)
            await fut

    def _close_local(self, stream: Stream) -> None:
        if not stream.remote_closed and not self._closed:
            # answered before the request ended: ask the client to stop sending (§8.1)
            self._write(f.rst_stream(stream.id, f.NO_ERROR))
        stream.closed = True
        stream.handler = None  # handler and stream refer to each other: no cycle for the GC
        self.streams.pop(stream.id, None)
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
