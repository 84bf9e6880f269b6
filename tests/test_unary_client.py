"""The client's receive path for unary calls, three ways on the same bytes: compiled
(ext/unary_client.pyx), its pure-Python twins (kvstore/client/receive.py, unary.py), and the
connection core's own frame loop (H2Connection.data_received) with the pure UnaryCall, the
reference. Every way must tell the calls the same outcomes, write the same frames back and
leave the connection in the same state, whatever the responses and however the bytes are cut."""
from __future__ import annotations

import asyncio
import os
import random
import struct
from collections.abc import Callable

import pytest

import kvstore._ext.unary_client as compiled
from kvstore.client import receive as py_receive, unary as py_unary
from kvstore.client.connection import _Protocol
from kvstore.client.headers import request_block
from kvstore.client.status import OK, UNAVAILABLE
from kvstore.h2 import frames as f
from kvstore.h2.connection import H2Connection
from kvstore.h2.hpack import Encoder

pytestmark = pytest.mark.inprocess

PREFIX = struct.Struct(">BL")
HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]
BLOCK = request_block(b"/etcdserverpb.KV/Put", b"test")


def test_compiled_path_is_selected_unless_disabled():
    from kvstore.client.unary_select import COMPILED, UnaryCall

    assert COMPILED == (os.environ.get("KVSTORE_NO_EXT", "") in ("", "0"))
    assert (UnaryCall is compiled.UnaryCall) == COMPILED


class Capture:
    """A transport that keeps what the connection writes."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.written += data

    def writelines(self, parts) -> None:
        for part in parts:
            self.written += part

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default


IMPLS = {
    "compiled": (compiled.UnaryCall, {"receive_frames": staticmethod(compiled.receive),
                                      "window_updates_due": staticmethod(compiled.window_updates_due)}),
    "pure": (py_unary.UnaryCall, {"receive_frames": staticmethod(py_receive.receive),
                                  "window_updates_due": staticmethod(py_receive.window_updates_due)}),
    "reference": (py_unary.UnaryCall, {"data_received": H2Connection.data_received}),
}


class Client:
    """One way's connection with ``calls`` unary calls open; ``outcomes`` their callbacks'.
    Made in a test's running loop (the connection takes it), fed by hand."""

    def __init__(self, impl: str, calls: int, prepare: Callable[[_Protocol], None]):
        call_class, overrides = IMPLS[impl]
        self.conn = type(f"Client_{impl}", (_Protocol,), overrides)()
        self.transport = Capture()
        self.conn.connection_made(self.transport)
        self.outcomes: list[tuple[int, int, bytes | str]] = []
        for i in range(calls):
            call = call_class(lambda code, payload, i=i: self.outcomes.append((i, code, payload)))
            self.conn.open_request(BLOCK, call, PREFIX.pack(0, 3), b"req")
        prepare(self.conn)
        self.conn._flush()
        del self.transport.written[:]

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.conn.data_received(chunk)
            self.conn._flush()

    def state(self) -> tuple:
        conn = self.conn
        return (self.outcomes[:], bytes(self.transport.written), self.transport.closed,
                sorted(conn.streams), conn._closed, conn._conn_recv_unacked,
                [(s.recv_window, s.recv_unacked, s.remote_closed, s.closed)
                 for _, s in sorted(conn.streams.items())])

    def lose(self) -> list:
        self.conn.connection_lost(None)
        return self.outcomes[:]


# -- responses, as abstract frames: (type, flags, stream, payload or header list, options) -----

def message(body: bytes, compressed: int = 0) -> bytes:
    return PREFIX.pack(compressed, len(body)) + body


def trailers(status: bytes = b"0", msg: bytes | None = None) -> list:
    out = [(b"grpc-status", status)]
    if msg is not None:
        out.append((b"grpc-message", msg))
    return out


def response(rng: random.Random, sid: int) -> list[tuple]:
    """One stream's frames, of a random kind."""
    H, D, R = f.HEADERS, f.DATA, f.RST_STREAM
    EH, ES = f.END_HEADERS, f.END_STREAM
    body = rng.randbytes(rng.choice([0, 1, 30, 300]))
    kind = rng.randrange(22)
    ok_end = [(H, EH | ES, sid, trailers(), {})]
    if kind == 0:  # padded and prioritized HEADERS, padded DATA
        return [(H, EH, sid, HEAD, {"pad": rng.randrange(4), "priority": True}),
                (D, 0, sid, message(body), {"pad": rng.randrange(1, 5)}),
                (H, EH | ES, sid, trailers(), {"pad": 2})]
    if kind == 1:  # header blocks continued
        return [(H, EH, sid, HEAD + [(b"x-a", b"v" * 40)], {"continued": 2}),
                (D, 0, sid, message(body), {}),
                (H, EH | ES, sid, trailers(b"0", b"fine"), {"continued": 3})]
    if kind == 2:  # a message in several DATA frames, an empty one among them
        data = message(body)
        cuts = sorted(rng.sample(range(len(data) + 1), 2))
        parts = [data[:cuts[0]], b"", data[cuts[0]:cuts[1]], data[cuts[1]:]]
        return [(H, EH, sid, HEAD, {})] + [(D, 0, sid, p, {}) for p in parts] + ok_end
    if kind == 3:  # trailers-only errors
        return [(H, EH | ES, sid, HEAD + trailers(b"9", b"50%25 %E2%9C%93 bad%zz"), {})]
    if kind == 4:
        return [(H, EH, sid, HEAD, {}), (D, 0, sid, message(body), {}),
                (H, EH | ES, sid, trailers(rng.choice([b"5", b"x", b"00", b"99"]), b"no"), {})]
    if kind == 5:
        return [(H, EH | ES, sid, [(b":status", rng.choice([b"503", b"404", b"abc", b"200 "]))], {})]
    if kind == 6:
        return [(H, EH, sid, [(b":status", b"200"), (b"content-type", b"text/html")], {})] + ok_end
    if kind == 7:  # compressed
        return [(H, EH, sid, HEAD, {}), (D, 0, sid, message(body, 1), {})] + ok_end
    if kind == 8:  # two messages in one frame, or none
        two = [(D, 0, sid, message(body) + message(b"x"), {})] if rng.random() < 0.5 else []
        return [(H, EH, sid, HEAD, {})] + two + ok_end
    if kind == 9:  # the stream ends inside a message
        return [(H, EH, sid, HEAD, {}), (D, 0, sid, message(body)[:-1] or b"\0", {})] + ok_end
    if kind == 10:  # no trailers: END_STREAM on DATA
        return [(H, EH, sid, HEAD, {}), (D, ES, sid, message(body), {})]
    if kind == 11:  # reset by the server, part way
        return [(H, EH, sid, HEAD, {}), (R, 0, sid, struct.pack(">L", f.CANCEL), {})]
    if kind == 12:  # frames after the end, ignored
        return [(H, EH, sid, HEAD, {}), (D, 0, sid, message(body), {}), *ok_end,
                (D, 0, sid, b"late", {}), (H, EH, sid, [(b"x-late", b"1")], {})]
    if kind == 13:  # the window is exceeded (prepare shrinks the stream's window)
        return [(H, EH, sid, HEAD, {}), (D, 0, sid, message(b"y" * 300), {"shrink": 100})]
    if kind == 14:  # large: DATA beyond the acknowledgement threshold, in 16 KiB frames
        data = message(rng.randbytes(rng.choice([70_000, 140_000])))
        return ([(H, EH, sid, HEAD, {})]
                + [(D, 0, sid, data[i:i + 16384], {}) for i in range(0, len(data), 16384)] + ok_end)
    if kind == 15:  # a trailers-only OK: no message
        return [(H, EH | ES, sid, HEAD + trailers(), {})]
    if kind == 16:  # duplicate fields: the last one counts, as in a dict
        return [(H, EH, sid, HEAD + [(b":status", b"200")], {}), (D, 0, sid, message(body), {}),
                (H, EH | ES, sid, trailers(b"3") + [(b"grpc-status", b"0")], {})]
    if kind == 17:  # HEADERS with END_STREAM but trailers carrying more headers after
        return [(H, EH, sid, HEAD, {}), (D, 0, sid, message(body), {}),
                (H, EH, sid, [(b"x-more", b"1")], {}), *ok_end]
    return [(H, EH, sid, HEAD, {}), (D, 0, sid, message(body), {}), *ok_end]  # the usual


def connection_frames(rng: random.Random) -> list[tuple]:
    """Frames for the whole connection, not for a stream."""
    return [rng.choice([
        (f.PING, 0, 0, b"12345678", {}),
        (f.SETTINGS, 0, 0, b"", {}),
        (f.WINDOW_UPDATE, 0, 0, struct.pack(">L", 1000), {}),
        (0x42, 0, 0, b"unknown frame type", {}),
        (f.GOAWAY, 0, 0, struct.pack(">LL", 0, 0), {}),  # graceful: ends once calls are done
    ])]


FATAL = [  # connection errors, to end a script with
    (f.DATA, 0, 999, b"idle", {}),  # DATA on a stream never opened
    (f.HEADERS, f.END_HEADERS, 2, HEAD, {}),  # HEADERS on an even stream
    (f.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff\xff\xff", {"raw": True}),  # bad HPACK
    (f.GOAWAY, 0, 0, struct.pack(">LL", 0, 0), {}),  # graceful: ends once the calls are done
]


def encode(frames: list[tuple]) -> bytes:
    """The wire bytes, header blocks encoded in wire order with one (indexing) encoder."""
    encoder = Encoder()
    out = []
    for ftype, flags, sid, payload, opts in frames:
        if ftype == f.HEADERS and not opts.get("raw"):
            payload = encoder.encode(payload)
        pieces = opts.get("continued", 0)
        if pieces:
            size = -(-len(payload) // pieces)
            parts = [payload[i:i + size] for i in range(0, len(payload), size)]
            out.append(f.frame(ftype, flags & ~f.END_HEADERS, sid, parts[0]))
            for i, part in enumerate(parts[1:], 2):
                out.append(f.frame(f.CONTINUATION, f.END_HEADERS if i == len(parts) else 0,
                                   sid, part))
            continue
        if opts.get("priority"):
            flags |= f.PRIORITY_FLAG
            payload = struct.pack(">LB", 0, 15) + payload
        if "pad" in opts:
            flags |= f.PADDED
            payload = bytes((opts["pad"],)) + payload + b"\0" * opts["pad"]
        out.append(f.frame(ftype, flags, sid, payload))
    return b"".join(out)


def script(rng: random.Random, calls: int) -> tuple[list[tuple], dict[int, int]]:
    """The responses to stream 1, 3, ... interleaved, each stream's in order; and the windows
    to shrink before (stream -> new receive window)."""
    queues = [response(rng, 2 * i + 1) for i in range(calls)]
    shrink = {q[-1][2]: q[-1][4]["shrink"] for q in queues if q[-1][4].get("shrink")}
    frames = []
    while any(queues):
        if rng.random() < 0.05:
            frames += connection_frames(rng)
        q = rng.choice([q for q in queues if q])
        frames.append(q.pop(0))
    if rng.random() < 0.3:
        frames.append(rng.choice(FATAL))
    return frames, shrink


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice([1, 7, 40, 200, 5000, len(data)])
        out.append(data[pos:pos + n])
        pos += n
    return out


def run_all(frames: list[tuple], shrink: dict[int, int], calls: int,
            cuts: list[bytes]) -> dict[str, tuple]:
    def prepare(conn: _Protocol) -> None:
        for sid, window in shrink.items():
            conn.streams[sid].recv_window = window

    results = {}
    for impl in IMPLS:
        client = Client(impl, calls, prepare)
        client.feed(cuts)
        results[impl] = (client.state(), client.lose())
    return results


@pytest.mark.parametrize("seed", range(60))
async def test_twins_agree_with_the_reference(seed):
    rng = random.Random(seed)
    calls = rng.randint(1, 12)
    frames, shrink = script(rng, calls)
    data = encode(frames)
    results = run_all(frames, shrink, calls, chunks(rng, data))
    assert results["compiled"] == results["reference"]
    assert results["pure"] == results["reference"]


async def test_the_usual_response_is_ok_and_the_stream_forgotten():
    frames = [(f.HEADERS, f.END_HEADERS, 1, HEAD, {}), (f.DATA, 0, 1, message(b"answer"), {}),
              (f.HEADERS, f.END_HEADERS | f.END_STREAM, 1, trailers(), {})]
    results = run_all(frames, {}, 1, [encode(frames)])
    for impl, ((outcomes, written, closed, streams, *_), lost) in results.items():
        assert outcomes == [(0, OK, b"answer")], impl
        assert (written, closed, streams, lost) == (b"", False, [], outcomes), impl


async def test_calls_pending_when_the_connection_is_lost_are_unavailable():
    frames = [(f.HEADERS, f.END_HEADERS, 1, HEAD, {})]
    results = run_all(frames, {}, 2, [encode(frames)])
    for impl, ((outcomes, *_), lost) in results.items():
        assert outcomes == [], impl
        assert sorted((i, code) for i, code, _ in lost) == [(0, UNAVAILABLE), (1, UNAVAILABLE)]


@pytest.mark.parametrize("call_class", [compiled.UnaryCall, py_unary.UnaryCall])
def test_unary_call_twins_fail_once(call_class):
    told = []
    call = call_class(lambda code, payload: told.append((code, payload)))
    assert not call.ended
    call.fail(4, "late")
    call.cancel()
    call.end_of_stream()
    assert call.ended and told == [(4, "late")]


# -- sending: start_unary, compiled and pure, on the same connection states ----------------------

def server_settings(values: dict[int, int]) -> bytes:
    return f.settings(values)


SEND_CASES = {
    "usual": b"",
    "small window": server_settings({f.INITIAL_WINDOW_SIZE: 100}),
    "no window": server_settings({f.INITIAL_WINDOW_SIZE: 0}),
    "table size": server_settings({f.HEADER_TABLE_SIZE: 1000}),
    "going away": f.goaway(0, f.NO_ERROR),
    "connection error": f.frame(f.DATA, 0, 999, b"x"),
}


@pytest.mark.parametrize("case", SEND_CASES)
async def test_start_unary_twins_send_the_same(case):
    results = []
    for start_unary in (compiled.start_unary, py_unary.start_unary):
        client = Client("pure", 0, lambda conn: None)
        conn = client.conn
        client.feed([SEND_CASES[case]])
        del client.transport.written[:]
        told: list = []
        returned = []
        for i, message in enumerate([b"", b"m" * 50, b"m" * 150, bytearray(b"ba"), b"n" * 70000]):
            stream = start_unary(conn, BLOCK, message,
                                 lambda code, payload, i=i, told=told: told.append((i, code, payload)))
            returned.append(None if stream is None else (stream.id, stream.send_window,
                                                         stream.closed, list(stream.pending)))
        assert told == []  # never before start_unary returns
        conn._flush()
        await asyncio.sleep(0)
        results.append((returned, told, bytes(client.transport.written), sorted(conn.streams),
                        conn._conn_send_window, conn._next_stream_id, sorted(conn._blocked)))
    assert results[0] == results[1]
    assert (results[0][1] != []) == (case in ("going away", "connection error"))
