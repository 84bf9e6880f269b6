"""Hostile clients of the client port, one per attack, each a process of its own:

    python tests/hostile.py ATTACK PORT SECONDS

Each one does to the server what an attacker would for SECONDS (or until the server closes on
it), never reading what the server answers unless the attack needs it, then prints one JSON
line of what it sent. Raw sockets and kvstore's own frame and HPACK helpers: no client library
would send these.
"""
from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from h2client import request_headers  # noqa: E402
from kvstore.api import rpc_pb2 as pb  # noqa: E402
from kvstore.h2 import frames as f  # noqa: E402

_PREFIX = struct.Struct(">BL")
WATCH = b"/etcdserverpb.Watch/Watch"
KEEPALIVE = b"/etcdserverpb.Lease/LeaseKeepAlive"
RANGE = b"/etcdserverpb.KV/Range"
UNKNOWN_FRAME_TYPE = 0xFA


def message(msg, compressed: bool = False) -> bytes:
    body = msg if isinstance(msg, bytes) else msg.SerializeToString()
    return _PREFIX.pack(1 if compressed else 0, len(body)) + body


class Attacker:
    """One connection that writes as fast as the server reads, and never reads itself
    (unless ``drain``)."""

    def __init__(self, port: int, deadline: float, settings: dict | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.deadline = deadline
        self.sent = 0
        self.closed = False
        # large windows: the server may send us everything (that we never read)
        self.send(f.PREFACE + f.settings(settings or {f.INITIAL_WINDOW_SIZE: f.MAX_WINDOW})
                  + f.window_update(0, f.MAX_WINDOW - f.DEFAULT_WINDOW))

    def send(self, data: bytes) -> bool:
        """False once the time is up or the server closed the connection."""
        view = memoryview(data)
        while view:
            if self.closed or time.monotonic() >= self.deadline:
                return False
            _, writable, _ = select.select([], [self.sock], [], 0.05)
            if not writable:
                continue
            try:
                n = self.sock.send(view)
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True
                return False
            view = view[n:]
            self.sent += n
        return True

    def open_stream(self, sid: int, path: bytes, end_headers: bool = True, extra=()) -> bool:
        return self.send(f.frame(f.HEADERS, f.END_HEADERS if end_headers else 0, sid,
                                 request_headers(path, extra=extra)))

    def data(self, sid: int, payload: bytes, end_stream: bool = False) -> bool:
        limit = f.DEFAULT_MAX_FRAME
        frames = [f.frame(f.DATA, 0, sid, payload[i:i + limit]) for i in range(0, len(payload), limit)]
        if end_stream:
            frames.append(f.frame(f.DATA, f.END_STREAM, sid))
        return self.send(b"".join(frames))


def watch_flood(port: int, seconds: float) -> dict:
    """Watch creates, then progress requests, on one stream: ~4 MB of them; replies never read."""
    a = Attacker(port, time.monotonic() + seconds)
    a.open_stream(1, WATCH)
    create = message(pb.WatchRequest(create_request=pb.WatchCreateRequest(
        key=b"/hostile/", range_end=b"/hostile0", progress_notify=True)))
    progress = message(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
    batch = create * 500 + progress * 5000
    while a.sent < 4_000_000 and a.data(1, batch):
        pass
    while a.send(f.frame(f.PING, 0, 0, b"12345678")):  # then keep the connection busy
        time.sleep(0.01)
    return {"bytes": a.sent, "closed_by_server": a.closed}


def keepalive_flood(port: int, seconds: float) -> dict:
    """LeaseKeepAlive requests, as fast as the server reads them; replies never read."""
    a = Attacker(port, time.monotonic() + seconds)
    a.open_stream(1, KEEPALIVE)
    batch = message(pb.LeaseKeepAliveRequest(ID=0x1234)) * 20000
    while a.data(1, batch):
        pass
    return {"bytes": a.sent, "closed_by_server": a.closed}


def bomb(mib: int = 1024) -> bytes:
    """A gzip member of ~1 MB that inflates to ``mib`` MiB of zeros: one MiB deflated, ending
    in a full flush (which resets the compressor, so every MiB deflates to the same bytes),
    repeated. (gzip.compress of a GiB takes 10 s.)"""
    zeros = b"\0" * (1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + one * mib + c.flush()
            + struct.pack("<II", crc, (mib << 20) & 0xFFFF_FFFF))


def gzip_bomb(port: int, seconds: float) -> dict:
    """Range requests whose gzip body inflates to 1 GiB, one stream after another."""
    a = Attacker(port, time.monotonic() + seconds)
    bomb_ = bomb()
    sid = 1
    sent = 0
    while a.open_stream(sid, RANGE, extra=[(b"grpc-encoding", b"gzip")]) and a.data(
            sid, message(bomb_, compressed=True), end_stream=True):
        sid += 2
        sent += 1
    return {"bombs": sent, "compressed_bytes": len(bomb_), "closed_by_server": a.closed}


def cheap_frames(kind: str):
    def attack(port: int, seconds: float) -> dict:
        a = Attacker(port, time.monotonic() + seconds)
        if kind == "continuation":  # a header block that never ends
            a.open_stream(1, WATCH, end_headers=False)
            batch = f.frame(f.CONTINUATION, 0, 1) * 10000
        elif kind == "window-update":
            batch = f.window_update(0, 1) * 10000
        elif kind == "priority":
            batch = b"".join(f.frame(f.PRIORITY, 0, 2 * i + 1, b"\0\0\0\0\x10")
                             for i in range(10000))
        else:
            batch = f.frame(UNKNOWN_FRAME_TYPE, 0, 0) * 10000
        n = 0
        while a.send(batch):
            n += 10000
        return {"frames": n, "closed_by_server": a.closed}
    return attack


def rapid_reset(port: int, seconds: float) -> dict:
    """HEADERS then RST_STREAM at once, on stream after stream of Watch."""
    a = Attacker(port, time.monotonic() + seconds)
    sid = 1
    block = request_headers(WATCH)
    while True:
        batch = []
        for _ in range(100):
            batch.append(f.frame(f.HEADERS, f.END_HEADERS, sid, block) + f.rst_stream(sid, f.CANCEL))
            sid += 2
        if not a.send(b"".join(batch)):
            break
    return {"streams": sid // 2, "closed_by_server": a.closed}


def unread_replies(port: int, seconds: float) -> dict:
    """Range requests for a 1 MB value, many at a time; replies never read."""
    a = Attacker(port, time.monotonic() + seconds)
    request = message(pb.RangeRequest(key=b"/hostile/big"))
    sid = 1
    while True:
        batch = []
        for _ in range(50):
            batch.append(f.frame(f.HEADERS, f.END_HEADERS, sid, request_headers(RANGE))
                         + f.frame(f.DATA, f.END_STREAM, sid, request))
            sid += 2
        if not a.send(b"".join(batch)):
            break
    return {"requests": sid // 2, "closed_by_server": a.closed}


class Http1Attacker(Attacker):
    """An HTTP/1.1 client of the JSON gateway, on the same terms (never reads)."""

    def __init__(self, port: int, deadline: float):  # no HTTP/2 preface
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.deadline = deadline
        self.sent = 0
        self.closed = False


def gateway_unread_replies(port: int, seconds: float) -> dict:
    """Pipelined JSON Ranges of a 1 MB value on one keep-alive connection; replies never read."""
    a = Http1Attacker(port, time.monotonic() + seconds)
    body = b'{"key":"L2hvc3RpbGUvYmln"}'  # /hostile/big
    request = b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    n = 0
    while a.send(request * 50):
        n += 50
    return {"requests": n, "closed_by_server": a.closed}


def gateway_keepalive_flood(port: int, seconds: float) -> dict:
    """One streaming LeaseKeepAlive whose chunked body never ends; answers never read."""
    a = Http1Attacker(port, time.monotonic() + seconds)
    a.send(b"POST /v3/lease/keepalive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b'{"ID":"1"}' * 1000
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    n = 0
    while a.send(chunk):
        n += 1000
    return {"requests": n, "closed_by_server": a.closed}


ATTACKS = {
    "watch-flood": watch_flood,
    "keepalive-flood": keepalive_flood,
    "gzip-bomb": gzip_bomb,
    "continuation-flood": cheap_frames("continuation"),
    "window-update-flood": cheap_frames("window-update"),
    "priority-flood": cheap_frames("priority"),
    "unknown-frame-flood": cheap_frames("unknown"),
    "rapid-reset": rapid_reset,
    "unread-replies": unread_replies,
    "gateway-unread-replies": gateway_unread_replies,
    "gateway-keepalive-flood": gateway_keepalive_flood,
}


if __name__ == "__main__":
    attack, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps({"attack": attack, **ATTACKS[attack](port, seconds)}), flush=True)
