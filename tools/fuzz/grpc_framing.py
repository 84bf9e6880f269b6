"""Fuzz target: gRPC message framing on a stream (kvstore/server/transport/h2/grpc_call.py).

Input: [options][max_receive][chunking seed: 2 bytes] the stream's DATA bytes. ``options``:
bits 0-1 the method's kind (unary, server_stream, bidi), bit 2 grpc-encoding gzip, bit 3 the
client ends the stream. A GrpcCall on a stand-in connection gets the bytes in the pieces the
seed cuts (each a DATA frame's payload) and then END_STREAM. Its twin is the framing spelled
out as gRPC specifies it (5-byte prefix: flag, big-endian length; flag 1 is compressed,
which the call's grpc-encoding must allow; grpc-go's checks and status codes), run on the
whole stream: the call must deliver the same messages and end with the same status, however
the stream is cut (whole frames take the call's fast path, pieces the buffered one). Nothing
may escape the call: a bad message ends the call with a status.
"""
from __future__ import annotations

import gzip
import struct
import zlib

from kvstore.h2 import hpack as pure_hpack
from kvstore.limits import DEFAULT_MAX_REQUEST_BYTES, with_overhead
from kvstore.server.transport.h2 import grpc_call as g

from .harness import Params, agree, outcome, pieces

NAME = "grpc_framing"
KINDS = ("unary", "server_stream", "bidi", "unary")
MAX_RECEIVE = (with_overhead(DEFAULT_MAX_REQUEST_BYTES), 0, 4, 5, 64, 4096)
PATH = b"/fuzz.Service/Method"


class _Handle:
    def cancel(self) -> None:
        pass


class _Loop:
    """What a GrpcCall asks of the connection's loop: timers that never fire, tasks never run
    (a method's coroutine is closed unstarted)."""

    def call_later(self, delay, callback, *args):
        return _Handle()

    def create_task(self, coro):
        coro.close()
        return _Handle()


class _Stream:
    id = 1


class _Conn:
    """Records what the call sends; header blocks are decoded to find the status."""

    _write_paused = False

    def __init__(self):
        self.loop = _Loop()
        self.sent: list[tuple] = []

    def send_headers(self, stream, block: bytes, end_stream: bool = False) -> None:
        self.sent.append(("headers", tuple(pure_hpack.Decoder().decode(block)), end_stream))

    def send_response(self, stream, head, prefix, body, trailers) -> None:
        self.sent.append(("response", bytes(prefix) + bytes(body),
                          tuple(pure_hpack.Decoder().decode(trailers))))

    def send_data(self, stream, data, end_stream: bool = False) -> bool:
        self.sent.append(("data", bytes(data), end_stream))
        return True

    # what the connection does for a call's input (flow control, the turn's budget): nothing
    # the framing's answers depend on

    def spend(self, units: int) -> None:
        pass

    def hold_stream(self, stream) -> None:
        pass

    def release_stream(self, stream) -> None:
        pass


def _status(sent: list[tuple]) -> int | None:
    """The call's grpc-status (None: no answer yet)."""
    for item in sent:
        if item[0] == "response":
            return g.OK
        if item[0] == "headers" and item[2]:
            return int(dict(item[1])[b"grpc-status"])
    return None


def _run_call(kind: str, gzip_encoding: bool, max_receive: int, frames: list[bytes], end: bool):
    delivered: list[bytes] = []

    def decode(raw: bytes) -> bytes:
        delivered.append(bytes(raw))
        return raw

    def unary(request):
        return b"response"

    headers = [(b":method", b"POST"), (b":path", PATH), (b"content-type", b"application/grpc")]
    if gzip_encoding:
        headers.append((b"grpc-encoding", b"gzip"))
    conn = _Conn()
    call = g.GrpcCall(conn, _Stream(), headers, {PATH: g.Method(unary, decode, kind)}, max_receive)
    for payload in frames:
        if payload:  # the connection hands over no empty payload
            call.data(payload)
    if end:
        call.end_of_stream()
    return delivered, _status(conn.sent)


def _model(kind: str, gzip_encoding: bool, max_receive: int, stream: bytes, end: bool):
    """gRPC's length-prefixed messages, as grpc-go's server reads them."""
    messages: list[bytes] = []
    pos = 0
    while len(stream) - pos >= 5:
        flag, length = struct.unpack_from(">BL", stream, pos)
        if length > max_receive:
            return messages, g.RESOURCE_EXHAUSTED
        if len(stream) - pos - 5 < length:
            break
        raw = stream[pos + 5:pos + 5 + length]
        pos += 5 + length
        if flag > 1:
            return messages, g.INTERNAL  # grpc: received unexpected payload format
        if flag == 1:
            if not gzip_encoding:
                return messages, g.INTERNAL
            # grpc-go reads at most max_receive + 1 inflated bytes: past max_receive it is
            # RESOURCE_EXHAUSTED whatever the rest of the stream holds
            d = zlib.decompressobj(31)
            try:
                raw = d.decompress(raw, max_receive + 1)
            except zlib.error:
                return messages, g.INTERNAL
            if len(raw) > max_receive:
                return messages, g.RESOURCE_EXHAUSTED
            if not d.eof:
                return messages, g.INTERNAL
        messages.append(raw)
        if kind != "bidi" and len(messages) > 1:
            return messages, g.UNIMPLEMENTED  # too many request messages for a unary call
    if not end or kind == "bidi":
        return messages, None  # a bidi method's status comes from the method
    if not messages:
        return messages, g.INTERNAL  # no request message for a method that takes one
    return messages, g.OK if kind == "unary" else None


def check(data: bytes) -> None:
    p = Params(data)
    options = p.byte()
    kind = KINDS[options & 3]
    gzip_encoding = bool(options & 4)
    end = bool(options & 8)
    max_receive = p.pick(MAX_RECEIVE)
    seed = p.u16()
    stream = p.rest()
    expected = _model(kind, gzip_encoding, max_receive, stream, end)
    frames = pieces(stream, seed, empty=False)
    got = outcome("GrpcCall", _run_call, kind, gzip_encoding, max_receive, frames, end)
    agree(got, ("ok", expected), f"the messages and status of a {kind} call", ("GrpcCall", "gRPC"))
    if seed:  # the same stream in one piece
        whole = outcome("GrpcCall, whole", _run_call, kind, gzip_encoding, max_receive, [stream], end)
        agree(whole, ("ok", expected), f"the messages and status of a {kind} call (one frame)",
              ("GrpcCall", "gRPC"))


def _message(body: bytes, compressed: bool = False) -> bytes:
    if compressed:
        body = gzip.compress(body, mtime=0)
    return struct.pack(">BL", int(compressed), len(body)) + body


def seeds() -> list[bytes]:
    """Real requests: one Put (the usual whole frame), a Watch stream's messages, gzip ones,
    empty ones; cut several ways."""
    put = b"\x0a\x03foo\x12\x03bar"
    watch = [b"\x0a\x05\x0a\x03foo", b"\x1a\x00", b"\x12\x02\x08\x01"]
    streams = [
        (8, _message(put)), (8 | 4, _message(put, True)), (8, _message(b"")),
        (8 | 2, b"".join(_message(w) for w in watch)), (2 | 4, b"".join(_message(w, True) for w in watch)),
        (8 | 1, _message(put)), (8, _message(put) + _message(put)), (8, _message(put)[:7]),
        (8 | 4, _message(b"x" * 1000, True)),
    ]
    out = []
    for options, stream in streams:
        for seed in (0, 3):
            out.append(bytes([options, 0]) + struct.pack(">H", seed) + stream)
    return out
