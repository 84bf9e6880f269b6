"""The generator's own gRPC client: HTTP/2 on kvstore's compiled frame reader and HPACK
decoder. grpc.aio costs 150-300 us of client CPU a unary call on the bench machine, this 25-60
us, so the generator fits next to the servers on 2 cores. Interface: see clients.py."""
from __future__ import annotations

import asyncio
import struct
from collections import deque

_FRAME = struct.Struct(">HBBBL")  # length (24 bits as H+B), type, flags, stream id
_GRPC_PREFIX = struct.Struct(">BL")
_SETTING = struct.Struct(">HL")
_U32 = struct.Struct(">L")
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
OUR_WINDOW = 1 << 24  # each stream's receive window we announce
OUR_CONN_WINDOW = 1 << 28
WINDOW_REFILL = 1 << 22  # received bytes acknowledged with a WINDOW_UPDATE at a time


def _literal(name: bytes, value: bytes) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FRAME.pack(n >> 8, n & 0xFF, ftype, flags, sid) + payload


class _Call:
    __slots__ = ("cb", "on_message", "data", "recv_unacked")

    def __init__(self, cb, on_message=None):
        self.cb = cb  # cb(status, body_or_reason) once, when the call ends
        self.on_message = on_message  # streaming: on_message(body) for every message
        self.data = b""
        self.recv_unacked = 0


class H2Conn(asyncio.Protocol):
    """One HTTP/2 connection speaking gRPC (unary calls, and server-streaming replies to one
    request message). Writes made during one event-loop pass leave in one send()."""

    def __init__(self, authority: bytes):
        from kvstore.h2.frame_reader_select import FrameReader
        from kvstore.h2.hpack_select import Decoder
        self.reader = FrameReader(1 << 24)
        self.decoder = Decoder()
        self.authority = authority
        self.blocks: dict[bytes, bytes] = {}
        self.calls: dict[int, _Call] = {}
        self.next_sid = 1
        self.wbuf = bytearray()
        self.flushing = False
        self.send_window = 65_535
        self.peer_window = 65_535  # the server's SETTINGS_INITIAL_WINDOW_SIZE
        self.max_streams = 1 << 31
        self.blocked: deque = deque()  # (path, data, end, call) waiting for window or a slot
        self.recv_unacked = 0
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.ready = self.loop.create_future()
        self.lost: str | None = None
        self.block = b""  # a header block, until its END_HEADERS (CONTINUATION frames)
        self.block_ends = 0  # whether it ends its stream

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        settings = b"".join(_SETTING.pack(k, v) for k, v in ((2, 0), (4, OUR_WINDOW)))
        transport.write(PREFACE + _frame(SETTINGS, 0, 0, settings) +
                        _frame(WINDOW_UPDATE, 0, 0, _U32.pack(OUR_CONN_WINDOW - 65_535)))

    def connection_lost(self, exc) -> None:
        self.lost = f"connection lost: {exc or 'closed by the server'}"
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(self.lost))
        calls, self.calls = self.calls, {}
        blocked, self.blocked = self.blocked, deque()
        for call in [*calls.values(), *(b[3] for b in blocked)]:
            call.cb(-1, self.lost)

    def data_received(self, data: bytes) -> None:
        frames, error = self.reader.feed(data)
        for ftype, flags, sid, payload in frames:
            if ftype == DATA:
                self._on_data(flags, sid, payload)
            elif ftype == HEADERS or ftype == CONTINUATION:
                self._on_headers(ftype, flags, sid, payload)
            elif ftype == SETTINGS:
                if not flags & ACK:
                    self._on_settings(payload)
            elif ftype == WINDOW_UPDATE:
                inc = _U32.unpack(payload)[0] & 0x7FFF_FFFF
                if sid == 0:
                    self.send_window += inc
                if self.blocked:
                    self._unblock()
            elif ftype == PING:
                if not flags & ACK:
                    self._write(_frame(PING, ACK, 0, payload))
            elif ftype == RST_STREAM:
                call = self.calls.pop(sid, None)
                if call is not None:
                    call.cb(-1, f"stream reset by the server (code {_U32.unpack(payload)[0]})")
            elif ftype == GOAWAY:
                self.transport.close()
        if self.recv_unacked >= WINDOW_REFILL:
            self._write(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.recv_unacked)))
            self.recv_unacked = 0
        if error is not None:
            self.transport.close()

    # -- frames in -----------------------------------------------------------------------------

    def _on_settings(self, payload: bytes) -> None:
        for i in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, i)
            if key == 3:
                self.max_streams = value
            elif key == 4:
                self.peer_window = value
        self._write(_frame(SETTINGS, ACK, 0))
        if not self.ready.done():
            self.ready.set_result(None)

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        self.recv_unacked += len(payload)
        call = self.calls.get(sid)
        if call is None:
            return
        if flags & PADDED:
            payload = payload[1:len(payload) - payload[0]]
        if call.on_message is None:
            call.data += payload
        else:
            call.recv_unacked += len(payload)
            buf = call.data + payload if call.data else payload
            pos, n = 0, len(buf)
            while n - pos >= 5:
                size = _U32.unpack_from(buf, pos + 1)[0]
                if n - pos - 5 < size:
                    break
                call.on_message(buf[pos + 5:pos + 5 + size])
                pos += 5 + size
            call.data = buf[pos:]
            if call.recv_unacked >= WINDOW_REFILL:
                self._write(_frame(WINDOW_UPDATE, 0, sid, _U32.pack(call.recv_unacked)))
                call.recv_unacked = 0
        if flags & END_STREAM:  # gRPC ends with trailers: a DATA that ends the stream is wrong
            self._finish(sid, call, [])

    def _on_headers(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        """Every header block is decoded, also of calls no longer waited for, to keep HPACK's
        dynamic table in step with the server's."""
        if ftype == HEADERS:
            if flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if flags & PRIORITY:
                payload = payload[5:]
            self.block_ends = flags & END_STREAM
            self.block = payload
        else:  # CONTINUATION
            self.block += payload
        if not flags & END_HEADERS:
            return
        headers = self.decoder.decode(self.block)
        self.block = b""
        if self.block_ends:  # trailers, or a trailers-only answer
            call = self.calls.get(sid)
            if call is not None:
                self._finish(sid, call, headers)

    def _finish(self, sid: int, call: _Call, trailers) -> None:
        self.calls.pop(sid, None)
        status, message = -1, "no grpc-status in the trailers"
        for name, value in trailers:
            if name == b"grpc-status":
                status = int(value)
            elif name == b"grpc-message":
                message = value.decode(errors="replace")
        if status == 0:
            data = call.data
            call.cb(0, data[5:] if call.on_message is None else b"")
        else:
            call.cb(status, message)
        if self.blocked:
            self._unblock()

    # -- frames out ----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.wbuf += data
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        if self.wbuf and self.transport is not None and not self.transport.is_closing():
            buf, self.wbuf = self.wbuf, bytearray()
            self.transport.write(buf)

    def _block(self, path: bytes) -> bytes:
        block = self.blocks.get(path)
        if block is None:
            block = self.blocks[path] = (
                b"\x83\x86" +  # :method POST, :scheme http (static table)
                _literal(b":path", path) + _literal(b":authority", self.authority) +
                _literal(b"content-type", b"application/grpc") + _literal(b"te", b"trailers"))
        return block

    def unary(self, path: bytes, message: bytes, cb) -> None:
        self._start(path, _GRPC_PREFIX.pack(0, len(message)) + message, True, _Call(cb))

    def stream(self, path: bytes, message: bytes, on_message, cb) -> None:
        """Sends one request message and leaves the request side open; every reply message
        goes to on_message."""
        self._start(path, _GRPC_PREFIX.pack(0, len(message)) + message, False,
                    _Call(cb, on_message))

    def _start(self, path: bytes, data: bytes, end: bool, call: _Call) -> None:
        if self.lost is not None:
            call.cb(-1, self.lost)
        elif (self.blocked or len(data) > self.send_window or len(data) > self.peer_window
              or len(self.calls) >= self.max_streams):
            self.blocked.append((path, data, end, call))
        else:
            self._send(path, data, end, call)

    def _send(self, path: bytes, data: bytes, end: bool, call: _Call) -> None:
        sid = self.next_sid
        self.next_sid = sid + 2
        self.calls[sid] = call
        self.send_window -= len(data)
        block = self._block(path)
        n, b = len(data), len(block)
        self._write(_FRAME.pack(b >> 8, b & 0xFF, HEADERS, END_HEADERS, sid) + block +
                    _FRAME.pack(n >> 8, n & 0xFF, DATA, END_STREAM if end else 0, sid) + data)

    def _unblock(self) -> None:
        blocked = self.blocked
        while blocked:
            path, data, end, call = blocked[0]
            if (len(data) > self.send_window or len(data) > self.peer_window
                    or len(self.calls) >= self.max_streams):
                return
            blocked.popleft()
            self._send(path, data, end, call)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def h2_connect(url: str) -> H2Conn:
    host, port = url.split("://", 1)[1].rstrip("/").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: H2Conn(f"{host}:{port}".encode()),
                                           host, int(port))
    await asyncio.wait_for(conn.ready, 10)
    return conn
