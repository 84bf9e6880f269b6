"""Fuzz target: a whole server connection in memory, bytes in, bytes out: the preface (or a
plain HTTP/1.1 request), frames, header blocks, streams, gRPC calls and their requests
(kvstore/h2/connection.py, kvstore/server/transport/h2/server_connection.py, grpc_call.py).

Input: [options][chunking seed: 2 bytes] what the client sends. ``options`` bit 0: the client
preface is put in front (so a mutated input keeps its frames past it); bit 1: the connection
answers HTTP/1.1 too (as `kvstore serve` does: /health, /version, /metrics). An
H2ServerConnection on a transport that records what is written gets the bytes in the pieces
the seed cuts, the event loop running between pieces (as between reads of a socket). Its calls
go to every method kvstore serves, with the real request parsing and the store's checks behind
them (services that answer at once; no store). The connection is run twice, with the compiled
frame reader and HPACK decoder and with their pure twins: the bytes written, and whether the
connection was closed, must be the same. Nothing may escape data_received (asyncio would
drop the connection with a "fatal error"), no callback or task may fail, and no method may
fail but with an etcd error.
"""
from __future__ import annotations

import asyncio
import gzip
import logging
import struct

import kvstore._ext.h2frames as compiled_frames
import kvstore._ext.hpack as compiled_hpack
from kvstore.api import rpc_pb2 as pb
from kvstore.h2 import frame_reader as pure_frames, frames as f, hpack as pure_hpack
from kvstore.h2.settings import OUR_MAX_FRAME, OUR_MAX_HEADER_LIST
from kvstore.limits import DEFAULT_MAX_REQUEST_BYTES, with_overhead
from kvstore.server.transport.h2.grpc_call import GrpcCall
from kvstore.server.transport.h2.server import method_table
from kvstore.server.transport.h2.server_connection import H2ServerConnection
from kvstore.store import validate

from .harness import Finding, Params, agree, pieces

NAME = "server_connection"
MAX_RECEIVE = with_overhead(DEFAULT_MAX_REQUEST_BYTES)


# -- services that answer at once ---------------------------------------------------------------

_CHECKS = {"Range": validate.check_range, "RangeStream": validate.check_range_stream,
           "Put": validate.check_put, "DeleteRange": validate.check_delete,
           "Txn": lambda r: validate.check_txn(r, 128)}


def _stub_service(name: str):
    """A service object whose methods check their request (KV's, as the store does) and answer
    with an empty response: a unary method at once, a streaming one once per request."""
    attrs: dict[str, object] = {"service_name": f"etcdserverpb.{name}"}
    for m in pb.DESCRIPTOR.services_by_name[name].methods:
        check = _CHECKS.get(m.name) if name == "KV" else None
        if m.client_streaming:
            async def bidi(self, requests):
                async for _ in requests:
                    yield b"\x0a\x00"
            attrs[m.name] = bidi
        elif m.server_streaming:
            async def server_stream(self, request, check=check):
                if check is not None:
                    check(request)
                yield b""
            attrs[m.name] = server_stream
        else:
            def unary(self, request, check=check):
                if check is not None:
                    check(request)
                return b""
            attrs[m.name] = unary
    return type(f"Fuzz{name}Service", (), attrs)()


METHODS = method_table([_stub_service(n) for n in ("KV", "Watch", "Lease", "Cluster", "Maintenance")])


def _http1(method: str, path: str) -> tuple[int, str, bytes]:
    if method not in ("GET", "HEAD"):
        return 405, "text/plain; charset=utf-8", b"Method Not Allowed\n"
    return (200, "application/json", b'{"health":"true"}') if path == "/health" else (
        404, "text/plain; charset=utf-8", b"404 page not found\n")


# -- the connection's surroundings --------------------------------------------------------------

class _Transport:
    def __init__(self):
        self.out = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.out += data

    def writelines(self, parts) -> None:
        for part in parts:
            self.out += part

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return default


class _Loop:
    """The event loop as the connection sees it: timers (a call's grpc-timeout) never fire, so
    that both runs see the same thing whatever their speed."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop

    def __getattr__(self, name):
        return getattr(self._loop, name)

    def call_later(self, delay, callback, *args):
        return self._loop.call_later(3600.0, lambda: None)


_loop: asyncio.AbstractEventLoop | None = None
_failures: list[str] = []


class _Errors(logging.Handler):
    """A call whose method failed with anything but an etcd error (grpc_call logs it, and
    answers UNKNOWN): the checks behind the stubs raised what they should not."""

    def emit(self, record: logging.LogRecord) -> None:
        _failures.append(f"logged: {record.getMessage()} {record.exc_info and record.exc_info[1]!r}")


logging.getLogger("kvstore.server.transport.h2.grpc_call").addHandler(_Errors(logging.ERROR))


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()

        def on_error(loop, context) -> None:
            exc = context.get("exception")
            _failures.append(f"{context.get('message')}: {exc!r}")

        _loop.set_exception_handler(on_error)
    asyncio.set_event_loop(_loop)
    return _loop


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _run(frames_impl, hpack_impl, http1: bool, chunks: list[bytes]) -> tuple:
    loop = _event_loop()
    _failures.clear()

    def make_call(conn, stream, headers):
        return GrpcCall(conn, stream, headers, METHODS, MAX_RECEIVE)

    conn = H2ServerConnection(make_call, http1=_http1 if http1 else None)
    conn.loop = _Loop(loop)
    conn._reader = frames_impl.FrameReader(OUR_MAX_FRAME)
    conn._decoder = hpack_impl.Decoder(max_table_size=4096, max_header_list_size=OUR_MAX_HEADER_LIST)
    transport = _Transport()
    conn.connection_made(transport)
    name = frames_impl.__name__
    for chunk in chunks:
        if transport.closed:
            break  # a closed transport reads no more
        try:
            conn.data_received(chunk)
        except Exception as e:
            raise Finding(f"{name}: data_received raised {type(e).__name__}: {e}") from e
        loop.run_until_complete(_turns(6))
    conn.connection_lost(None)
    loop.run_until_complete(_turns(6))
    leftover = [t for t in asyncio.all_tasks(loop)]
    for task in leftover:
        task.cancel()
    if leftover:
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
    if _failures:
        raise Finding(f"{name}: the event loop reported {_failures}")
    return bytes(transport.out), transport.closed


def check(data: bytes) -> None:
    p = Params(data)
    options = p.byte()
    seed = p.u16()
    stream = p.rest()
    if options & 1:
        stream = f.PREFACE + stream
    chunks = pieces(stream, seed, empty=False)
    agree(_run(compiled_frames, compiled_hpack, bool(options & 2), chunks),
          _run(pure_frames, pure_hpack, bool(options & 2), chunks),
          "the bytes written and the connection's end")


# -- seeds: what clients send -------------------------------------------------------------------

def _message(request, compressed: bool = False) -> bytes:
    body = request if isinstance(request, bytes) else request.SerializeToString()
    if compressed:
        body = gzip.compress(body, mtime=0)
    return struct.pack(">BL", int(compressed), len(body)) + body


def _request_headers(encoder, path: bytes, extra=()) -> bytes:
    return encoder.encode([(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                           (b":authority", b"127.0.0.1:2379"), (b"content-type", b"application/grpc"),
                           (b"user-agent", b"grpc-go/1.58.3"), (b"te", b"trailers"), *extra])


def seeds() -> list[bytes]:
    """etcd clients' traffic: unary calls (Put, Range, Txn, a bad Range), a Watch and a
    LeaseKeepAlive stream, gzip, header blocks in CONTINUATIONs and padded frames, pings,
    resets, an unknown method, a GET, and HTTP/1.1 requests."""
    opening = f.settings({f.ENABLE_PUSH: 0, f.INITIAL_WINDOW_SIZE: 4 * 2**20}) + f.window_update(0, 2**20)
    put = pb.PutRequest(key=b"/registry/pods/default/p1", value=b"v" * 20, prev_kv=True)
    txn = pb.TxnRequest(
        compare=[pb.Compare(key=put.key, target=pb.Compare.MOD, mod_revision=5)],
        success=[pb.RequestOp(request_put=put)],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=put.key))])
    create = pb.WatchCreateRequest(key=b"/registry/", range_end=b"/registry0")
    watch = [pb.WatchRequest(create_request=create),
             pb.WatchRequest(progress_request=pb.WatchProgressRequest()),
             pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=0))]
    kv = b"/etcdserverpb.KV/"

    def unary(enc, sid: int, path: bytes, request, compressed: bool = False) -> bytes:
        extra = [(b"grpc-encoding", b"gzip")] if compressed else []
        return (f.frame(f.HEADERS, f.END_HEADERS, sid, _request_headers(enc, path, extra))
                + f.frame(f.DATA, f.END_STREAM, sid, _message(request, compressed)))

    def calls(enc) -> bytes:
        return (unary(enc, 1, kv + b"Range", pb.RangeRequest(key=b"a", range_end=b"\x00"))
                + unary(enc, 3, kv + b"Txn", txn) + unary(enc, 5, kv + b"Range", pb.RangeRequest())
                + unary(enc, 7, kv + b"Put", put, compressed=True))

    def streaming(enc, path: bytes, requests, end: bool) -> bytes:
        return (f.frame(f.HEADERS, f.END_HEADERS, 1, _request_headers(enc, path))
                + b"".join(f.frame(f.DATA, 0, 1, _message(r)) for r in requests)
                + (f.frame(f.DATA, f.END_STREAM, 1, b"") if end else f.rst_stream(1, f.CANCEL)))

    def continued(enc) -> bytes:
        block = _request_headers(enc, kv + b"Range", [(b"grpc-timeout", b"1999m")])
        return (f.frame(f.HEADERS, 0, 1, block[:10]) + f.frame(f.CONTINUATION, 0, 1, block[10:20])
                + f.frame(f.CONTINUATION, f.END_HEADERS, 1, block[20:])
                + f.frame(f.DATA, f.PADDED | f.END_STREAM, 1,
                          b"\x03" + _message(pb.RangeRequest(key=b"k")) + b"\x00" * 3))

    def padded(enc) -> bytes:
        priority = b"\x00\x00\x00\x01\x10"  # depends on stream 1, weight 16
        return (f.frame(f.HEADERS, f.PADDED | f.PRIORITY_FLAG | f.END_HEADERS, 3,
                        b"\x02" + priority + _request_headers(enc, kv + b"Compact") + b"\x00\x00")
                + f.frame(f.PRIORITY, 0, 5, b"\x00\x00\x00\x03\x10") + f.frame(f.PING, 0, 0, b"\x00" * 8)
                + f.frame(0x20, 0xFF, 9, b"unknown") + f.window_update(3, 100)
                + f.frame(f.DATA, f.END_STREAM, 3, _message(pb.CompactionRequest(revision=1))))

    def refused(enc) -> bytes:
        return (unary(enc, 1, kv + b"Nope", b"") + unary(enc, 3, b"/nope", b"")
                + f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 5,
                          enc.encode([(b":method", b"GET"), (b":path", b"/")]))
                + f.goaway(0, f.NO_ERROR))

    makers = [
        lambda enc: unary(enc, 1, kv + b"Put", put) + f.SETTINGS_ACK,
        calls,
        lambda enc: streaming(enc, b"/etcdserverpb.Watch/Watch", watch, False),
        lambda enc: streaming(enc, b"/etcdserverpb.Lease/LeaseKeepAlive",
                              [pb.LeaseKeepAliveRequest(ID=i) for i in (1, 2)], True),
        continued, padded, refused,
    ]
    streams = [opening + make(pure_hpack.Encoder()) for make in makers]
    out = [bytes([1, 0, 0]) + s for s in streams] + [bytes([1, 0, 9]) + s for s in streams[:4]]
    out.append(bytes([3, 0, 0]) + opening + unary(pure_hpack.Encoder(), 1, kv + b"Put", put))
    for request in (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD /version HTTP/1.1\r\n\r\n",
                    b"POST /metrics HTTP/1.1\r\n\r\n", b"GET  /x HTTP/1.1\r\n\r\n"):
        out.append(bytes([2, 0, 2]) + request)
    return out
