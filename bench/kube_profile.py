#!/usr/bin/env python3
"""Kubernetes-shaped mixed load, open loop, against kvstore and etcd, whole and split by the kube map.

Four setups, each started fresh on loopback (data dirs on one medium: --medium disk or tmpfs),
one after the other, driven by the same load generator:

  (a) kvstore       one `kvstore serve` process, LMDB log
  (b) kvstore-kube  the kube profile: 5 partitions (default, nodes, pods, leases, events), one
                    process each (`kvstore serve --profile kube`, or the 5 workers started by
                    this script when the CLI has no --profile yet; --kube-workers)
  (c) etcd          one etcd (Debian's), default flags apart from data dir and URLs
  (d) etcd-kube     5 etcds on the kube map's ports, each its own single-member cluster

The load is three streams, each request routed by its key (kvstore.partition.kube.kube_map for
(b) and (d); one endpoint for (a) and (c)):

  leases  node heartbeats: kube-apiserver's update Txn If(mod_revision(key) == r) Then(Put)
          Else(Range) on 10,000 Lease keys /registry/leases/kube-node-lease/node-NNNNN (~400 B),
          created before the steps; r is the revision the generator last saw of the key (the
          Put's header revision, or the Else Range's kv), as kube's cache keeps it
  pods    pod churn on /registry/pods/default/pod-N (~4 KB): create If(create_revision == 0)
          Then Put, update (the mod_revision Txn), delete If(mod_revision == r) Then DeleteRange,
          1 : 3 : 1; one watch on /registry/pods/ (prev_kv, as kube-apiserver's) stays open, and
          its events are counted against the pod writes acknowledged
  events  /registry/events/default/ev-N (~1 KB): If(create_revision == 0) Then Put with a lease,
          one LeaseGrant (TTL 3600) reused for 60 s of events (--lease-reuse-duration-seconds)

Offered rates rise in steps, as multiples (--scales, up to --max-scale) of the base mix 10,000
lease Txn/s + 1,000 pod writes/s + 500 events/s. Open loop: each request has a scheduled send
time, is sent then whether or not earlier ones have completed, and its latency runs from that
scheduled time (no coordinated omission; the generator's own lateness is shown as the send
lag). Each step ramps linearly from 0 over --ramp-seconds, then holds the rate for
--step-seconds, and only requests scheduled in that window count; achieved/s is their answers
(an Else branch is an answer) over the window. In-flight requests are capped per generator
process and stream (--max-inflight, so a saturated partition does not hold back the others'
requests); a request over the cap is not sent. A step is sustained when every stream achieves
>= 95% of its offered rate with p99 <= 100 ms, no errors and nothing left unsent; a setup stops
after two consecutive steps that are not. Reported per step and stream: offered/s, achieved/s,
p50/p99 ms, errors, Else branches, send lag; per step: the CPU-seconds in the window of all
server processes of the setup (and of each one), of the generator, and of everything else on
the machine (/proc/stat busy time minus those two), and the watch's events against the pod
writes acknowledged. Then a summary: the highest sustained total per setup, the ratios
(b)/(d), (b)/(a), (a)/(c), and the goals: (b) sustains x1 with every p99 <= 100 ms; (b)'s
highest sustained total >= 2x (d)'s. --json FILE writes it all. The kvstore build is named in
the header; the pure-Python twins are refused. etcd gets an 8 GiB backend quota (nothing is
compacted during a run).

The generator shares the 2 cores with the servers, so it is made cheap: --procs processes
(default 2) split the keys and the rates, each on uvloop with --conns connections per endpoint
(default 2), sending pre-encoded requests, at nice -10 (--generator-nice: in a real cluster the
load comes from other machines; it uses well under a core). By default they speak gRPC through
a small HTTP/2 client of their own, on kvstore's compiled frame reader and HPACK decoder:
grpc.aio costs 150-300 us of CPU a unary call on this machine (the raw client 25-60 us), so at
x1 it alone would need more than both cores. --client grpc uses grpc.aio instead (--conns
channels per endpoint, raw bytes in and out), to check figures against it at low rates.

    python3 bench/kube_profile.py                                  # all four setups, disk
    python3 bench/kube_profile.py --setups a,c --max-scale 0.25 --step-seconds 3   # smoke run
    python3 bench/kube_profile.py --medium tmpfs --json /tmp/kube_profile.json
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from array import array
from collections import Counter, deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etcd_side_by_side import (  # noqa: E402
    REPO,
    EtcdServer,
    KvstoreServer,
    Server,
    child_env,
    cpu_busy,
    free_port,
    git_state,
    log,
    proc_tree_cpu,
    tcp_open,
)
from kvstore.api import rpc_pb2 as pb  # noqa: E402
from kvstore.partition.kube import METRICS_PORT_OFFSET, kube_map  # noqa: E402

SETUPS = {
    "a": ("kvstore", "kvstore, one process (LMDB log)"),
    "b": ("kvstore-kube", "kvstore kube profile, 5 partitions, one process each"),
    "c": ("etcd", "etcd, one process"),
    "d": ("etcd-kube", "5 etcds split by the kube map"),
}
STREAMS = ("leases", "pods", "events")
BASE = {"leases": 10_000.0, "pods": 1_000.0, "events": 500.0}  # requests/s at x1
DEFAULT_SCALES = "0.1,0.25,0.4,0.5,0.6,0.75,0.9,1,1.25,1.5,2,2.5,3,4"
GOAL_ACHIEVED = 0.95  # of the offered rate
GOAL_P99 = 0.100  # seconds
PORT_BLOCK = 7  # the kube map's ports: P (default), P+2 (supervisor /health), P+3..P+6

TXN = b"/etcdserverpb.KV/Txn"
PUT = b"/etcdserverpb.KV/Put"
RANGE = b"/etcdserverpb.KV/Range"
LEASE_GRANT = b"/etcdserverpb.Lease/LeaseGrant"
WATCH = b"/etcdserverpb.Watch/Watch"

LEASE_PREFIX = b"/registry/leases/kube-node-lease/"
POD_PREFIX = b"/registry/pods/"
EVENT_PREFIX = b"/registry/events/default/"


def lease_key(i: int) -> bytes:
    return LEASE_PREFIX + b"node-%05d" % i


def pod_key(i: int) -> bytes:
    return POD_PREFIX + b"default/pod-%d" % i


def event_key(i: int) -> bytes:
    return EVENT_PREFIX + b"ev-%d" % i


# ---------------------------------------------------------------------------------------------
# protobuf, pre-encoded: requests are concatenations of encoded fields (each built once where
# it does not change), so a request costs a few byte joins instead of building messages.

_ONE_BYTE = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _ONE_BYTE[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (tag = field number << 3 | 2, all fields here < 16)."""
    return _ONE_BYTE[tag] + varint(len(payload)) + payload


# Compare: result 1 (EQUAL = 0, left out), target 2, key 3, create_revision 5, mod_revision 6.
# The revisions are in a oneof, so a 0 is sent explicitly, as protobuf does.
_TARGET_CREATE = b"\x10\x01"
_TARGET_MOD = b"\x10\x02"
_CREATE_REV_ZERO = b"\x28\x00"
_MOD_REV = b"\x30"


def create_compare(key: bytes) -> bytes:
    return ld(0x0A, _TARGET_CREATE + ld(0x1A, key) + _CREATE_REV_ZERO)  # TxnRequest.compare


def mod_compare_head(key: bytes) -> bytes:
    """A Compare's bytes up to the mod_revision's value."""
    return _TARGET_MOD + ld(0x1A, key) + _MOD_REV


def mod_compare(head: bytes, rev: int) -> bytes:
    return ld(0x0A, head + varint(rev))


def put_op(key: bytes, value_field: bytes, lease: int = 0) -> bytes:
    """TxnRequest.success with one RequestOp.request_put (value_field: ld(0x12, value))."""
    put = ld(0x0A, key) + value_field + (b"\x18" + varint(lease) if lease else b"")
    return ld(0x12, ld(0x12, put))


def range_failure(key: bytes) -> bytes:
    return ld(0x1A, ld(0x0A, ld(0x0A, key)))  # TxnRequest.failure: RequestOp.request_range


def delete_op(key: bytes) -> bytes:
    return ld(0x12, ld(0x1A, ld(0x0A, key)))  # TxnRequest.success: RequestOp.request_delete_range


def check_encoders() -> None:
    """The hand-made encodings parse to the messages protobuf itself would send."""
    key, value, rev, lease = b"/registry/pods/default/pod-7", b"v" * 300, 123456, 0x7FFF0000AA
    op_put = pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))
    cases = [
        (mod_compare(mod_compare_head(key), rev) + put_op(key, ld(0x12, value)) + range_failure(key),
         pb.TxnRequest(compare=[pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                                           mod_revision=rev)],
                       success=[op_put],
                       failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))])),
        (create_compare(key) + put_op(key, ld(0x12, value), lease),
         pb.TxnRequest(compare=[pb.Compare(key=key, target=pb.Compare.CREATE, create_revision=0)],
                       success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value,
                                                                       lease=lease))])),
        (mod_compare(mod_compare_head(key), rev) + delete_op(key),
         pb.TxnRequest(compare=[pb.Compare(key=key, target=pb.Compare.MOD, mod_revision=rev)],
                       success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))])),
    ]
    for raw, want in cases:
        got = pb.TxnRequest.FromString(raw)
        if got != want or raw != want.SerializeToString():
            raise AssertionError(f"pre-encoded request differs:\n{got}\nvs\n{want}")


# ---------------------------------------------------------------------------------------------
# gRPC clients: the cheap one of our own (HTTP/2 with kvstore's compiled frame reader and HPACK
# decoder), and grpc.aio. Both take pre-encoded messages and call back with (status, body):
# status 0 and the response bytes, or a gRPC status code (-1: connection lost) and a reason.

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
        from kvstore.server.transport.h2.frame_reader_select import FrameReader
        from kvstore.server.transport.h2.hpack_select import Decoder
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


class AioConn:
    """The same interface over a grpc.aio channel (--client grpc)."""

    def __init__(self, channel):
        self.channel = channel
        self.unaries: dict[bytes, object] = {}
        self.tasks: set = set()

    def unary(self, path: bytes, message: bytes, cb) -> None:
        mc = self.unaries.get(path)
        if mc is None:
            mc = self.unaries[path] = self.channel.unary_unary(path.decode())  # bytes in and out
        task = asyncio.ensure_future(mc(message))
        task.add_done_callback(lambda t: cb(*_aio_outcome(t)))

    def stream(self, path: bytes, message: bytes, on_message, cb) -> None:
        async def run():
            call = self.channel.stream_stream(path.decode())()
            await call.write(message)
            async for reply in call:
                on_message(reply)
            return b""
        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(lambda t: cb(*_aio_outcome(t)))

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        task = asyncio.ensure_future(self.channel.close())
        self.tasks.add(task)


def _aio_outcome(task) -> tuple[int, object]:
    import grpc
    if task.cancelled():
        return -1, "cancelled"
    exc = task.exception()
    if exc is None:
        return 0, task.result()
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().value[0], exc.details() or exc.code().name
    return -1, repr(exc)


async def aio_connect(url: str) -> AioConn:
    import grpc
    channel = grpc.aio.insecure_channel(url.split("://", 1)[1].rstrip("/"),
                                        options=[("grpc.use_local_subchannel_pool", 1)])
    await asyncio.wait_for(channel.channel_ready(), 10)
    return AioConn(channel)


class Pool:
    """--conns connections to one endpoint, used in turn."""

    def __init__(self, conns):
        self.conns = conns
        self.i = 0

    def next(self):
        self.i = (self.i + 1) % len(self.conns)
        return self.conns[self.i]


def call_once(conn, path: bytes, message: bytes) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()

    def done(status, body):
        if not fut.done():
            fut.set_result((status, body))
    conn.unary(path, message, done)
    return fut


# ---------------------------------------------------------------------------------------------
# the generator (one process of --procs)


class Tally:
    """What one stream's requests scheduled in a measured window came to."""
    __slots__ = ("lat", "lag", "ok", "errors", "skipped", "conflicts", "pending", "kinds")

    def __init__(self):
        self.lat = array("d")  # seconds from the scheduled send time to the answer
        self.lag = array("d")  # seconds from the scheduled send time to the actual send
        self.ok = self.errors = self.skipped = self.conflicts = self.pending = 0
        self.kinds: Counter = Counter()

    def dump(self) -> dict:
        return {"lat": self.lat.tobytes(), "lag": self.lag.tobytes(), "ok": self.ok,
                "errors": self.errors, "skipped": self.skipped, "conflicts": self.conflicts,
                "unfinished": self.pending, "kinds": dict(self.kinds)}


class Generator:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.w, self.n = cfg["worker"], cfg["procs"]
        self.map = kube_map("127.0.0.1", cfg["port"]) if cfg["partitioned"] else None
        self.single_url = f"http://127.0.0.1:{cfg['port']}"
        self.pools: dict[str, Pool] = {}
        self.flight = {s: [0] for s in STREAMS}  # requests in flight, per stream
        self.cap = cfg["max_inflight"]
        self.monotonic = time.monotonic
        self.TxnResponse = pb.TxnResponse
        # leases: this process's share of the node keys
        value = b"k8s\x00" + random.Random(1).randbytes(cfg["lease_value"] - 4)
        vfield = ld(0x12, value)
        self.hb_keys = [lease_key(i) for i in range(self.w, cfg["lease_keys"], self.n)]
        self.hb_rev = [0] * len(self.hb_keys)
        self.hb_head = [mod_compare_head(k) for k in self.hb_keys]
        self.hb_tail = [put_op(k, vfield) + range_failure(k) for k in self.hb_keys]
        self.hb_next = 0
        # pods
        self.pod_value = ld(0x12, b"k8s\x00" + random.Random(2).randbytes(cfg["pod_value"] - 4))
        self.pod_idle: deque[tuple[bytes, int]] = deque()  # live pods with no write in flight
        self.pod_next = self.w
        self.pod_op = 0
        self.pod_acked = 0  # successful pod writes (each is one watch event)
        # events
        self.ev_value = ld(0x12, b"k8s\x00" + random.Random(3).randbytes(cfg["event_value"] - 4))
        self.ev_next = self.w
        self.lease_id = 0
        self.lease_at = 0.0
        self.granting = False
        self.grants = self.grant_errors = 0
        # the watch (worker 0)
        self.watch_events = 0
        self.watch_error: str | None = None

    def url_for(self, key: bytes) -> str:
        if self.map is None:
            return self.single_url
        return self.map.partition_for(key).url

    def pool_for(self, key: bytes) -> Pool:
        return self.pools[self.url_for(key)]

    # -- set-up --------------------------------------------------------------------------------

    async def connect(self) -> dict:
        connect = h2_connect if self.cfg["client"] == "raw" else aio_connect
        urls = sorted({self.url_for(p) for p in (LEASE_PREFIX, POD_PREFIX, EVENT_PREFIX)})
        deadline = time.monotonic() + 60
        for url in urls:
            conns = []
            while len(conns) < self.cfg["conns"]:
                try:
                    conns.append(await connect(url))
                except (TimeoutError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            self.pools[url] = Pool(conns)
            probe = pb.RangeRequest(key=b"/registry/probe").SerializeToString()
            while True:  # a fresh etcd answers "no leader" until it elected itself
                status, body = await call_once(conns[0], RANGE, probe)
                if status == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} not ready: status {status} {body}")
                await asyncio.sleep(0.2)
        if self.w == 0:
            await self.open_watch()
        return {"endpoints": urls}

    async def open_watch(self) -> None:
        created = asyncio.get_running_loop().create_future()
        req = pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=POD_PREFIX, range_end=POD_PREFIX[:-1] + b"0", prev_kv=True)).SerializeToString()
        parse = pb.WatchResponse.FromString

        def on_message(body: bytes) -> None:
            r = parse(body)
            self.watch_events += len(r.events)
            if r.created and not created.done():
                created.set_result(None)
            if r.canceled:
                self.watch_error = f"watch canceled: {r.cancel_reason}"

        def ended(status, reason) -> None:
            self.watch_error = f"watch ended: status {status} {reason}"
            if not created.done():
                created.set_exception(RuntimeError(self.watch_error))
        self.pool_for(POD_PREFIX).next().stream(WATCH, req, on_message, ended)
        await asyncio.wait_for(created, 10)

    async def prepare(self) -> dict:
        """This process's share of the lease keys and the initial pods; the first event lease."""
        sem = asyncio.Semaphore(256)
        errors: Counter = Counter()

        async def put_lease(i: int) -> None:
            key = self.hb_keys[i]
            msg = ld(0x0A, key) + ld(0x12, b"k8s\x00" + b"\x01" * (self.cfg["lease_value"] - 4))
            async with sem:
                status, body = await call_once(self.pool_for(key).next(), PUT, msg)
            if status:
                errors[f"lease key: {status} {body}"] += 1
            else:
                self.hb_rev[i] = pb.PutResponse.FromString(body).header.revision

        async def create_pod() -> None:
            key = pod_key(self.pod_next)
            self.pod_next += self.n
            async with sem:
                status, body = await call_once(self.pool_for(key).next(), TXN,
                                               create_compare(key) + put_op(key, self.pod_value))
            if status:
                errors[f"pod: {status} {body}"] += 1
                return
            r = pb.TxnResponse.FromString(body)
            if r.succeeded:
                self.pod_acked += 1
                self.pod_idle.append((key, r.header.revision))
        await asyncio.gather(*(put_lease(i) for i in range(len(self.hb_keys))))
        my_pods = len(range(self.w, self.cfg["pods"], self.n))
        await asyncio.gather(*(create_pod() for _ in range(my_pods)))
        await self.grant_lease()
        if errors or not self.lease_id:
            raise RuntimeError(f"prepare failed: {dict(errors)} lease {self.lease_id}")
        return {"lease_keys": len(self.hb_keys), "pods": len(self.pod_idle)}

    def grant_lease(self) -> asyncio.Future:
        """Asks for a new event lease; the one in use serves until it is granted."""
        self.granting = True
        done = asyncio.get_running_loop().create_future()
        msg = pb.LeaseGrantRequest(TTL=3600).SerializeToString()

        def granted(status, body) -> None:
            self.granting = False
            if status == 0:
                self.lease_id = pb.LeaseGrantResponse.FromString(body).ID
                self.lease_at = time.monotonic()
                self.grants += 1
            else:
                self.grant_errors += 1
            done.set_result(None)
        self.pool_for(EVENT_PREFIX).next().unary(LEASE_GRANT, msg, granted)
        return done

    # -- the streams ---------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return sum(f[0] for f in self.flight.values())

    def send(self, flight: list[int], pool: Pool, path: bytes, msg: bytes, t: float,
             tally: Tally | None, handle) -> None:
        """Sends a request of a stream (its in-flight count: flight[0]) scheduled at t;
        handle(status, body) -> conflict (the Else branch)."""
        if flight[0] >= self.cap:
            if tally is not None:
                tally.skipped += 1
            return
        flight[0] += 1
        monotonic = self.monotonic
        if tally is not None:
            tally.pending += 1
            tally.lag.append(monotonic() - t)

        def done(status, body) -> None:
            flight[0] -= 1
            try:
                conflict = handle(status, body)
            except Exception as e:  # noqa: BLE001 - a bad answer is an error of that request
                status, body, conflict = -1, f"bad answer: {e!r}", False
            if tally is not None:
                tally.pending -= 1
                if status == 0:
                    tally.lat.append(monotonic() - t)
                    tally.ok += 1
                    tally.conflicts += conflict
                else:
                    tally.errors += 1
                    tally.kinds[f"{status} {str(body)[:80]}"] += 1
        pool.next().unary(path, msg, done)

    def heartbeat(self, t: float, tally: Tally | None) -> None:
        i = self.hb_next
        self.hb_next = (i + 1) % len(self.hb_keys)
        msg = mod_compare(self.hb_head[i], self.hb_rev[i]) + self.hb_tail[i]

        def handle(status, body) -> bool:
            if status:
                return False
            r = self.TxnResponse.FromString(body)
            if r.succeeded:
                self.hb_rev[i] = r.header.revision
                return False
            kvs = r.responses[0].response_range.kvs
            self.hb_rev[i] = kvs[0].mod_revision if kvs else 0
            return True
        self.send(self.flight["leases"], self.pool_for(self.hb_keys[i]), TXN, msg, t, tally, handle)

    def pod_write(self, t: float, tally: Tally | None) -> None:
        op = self.pod_op
        self.pod_op = (op + 1) % 5  # create, update x3, delete
        if op == 0 or not self.pod_idle:
            key = pod_key(self.pod_next)
            self.pod_next += self.n
            msg = create_compare(key) + put_op(key, self.pod_value)

            def handle(status, body) -> bool:
                if status:
                    return False
                r = self.TxnResponse.FromString(body)
                if r.succeeded:
                    self.pod_acked += 1
                    self.pod_idle.append((key, r.header.revision))
                return not r.succeeded
        elif op < 4:
            key, rev = self.pod_idle.popleft()
            msg = mod_compare(mod_compare_head(key), rev) + put_op(key, self.pod_value) + range_failure(key)

            def handle(status, body) -> bool:
                if status:
                    return False  # its state is unknown: it leaves the churn
                r = self.TxnResponse.FromString(body)
                if r.succeeded:
                    self.pod_acked += 1
                    self.pod_idle.append((key, r.header.revision))
                    return False
                kvs = r.responses[0].response_range.kvs
                if kvs:
                    self.pod_idle.append((key, kvs[0].mod_revision))
                return True
        else:
            key, rev = self.pod_idle.popleft()
            msg = mod_compare(mod_compare_head(key), rev) + delete_op(key)

            def handle(status, body) -> bool:
                if status:
                    return False
                r = self.TxnResponse.FromString(body)
                self.pod_acked += r.succeeded
                return not r.succeeded
        self.send(self.flight["pods"], self.pool_for(key), TXN, msg, t, tally, handle)

    def event(self, t: float, tally: Tally | None) -> None:
        if not self.granting and time.monotonic() - self.lease_at >= self.cfg["lease_reuse"]:
            self.grant_lease()
        key = event_key(self.ev_next)
        self.ev_next += self.n
        msg = create_compare(key) + put_op(key, self.ev_value, self.lease_id)

        def handle(status, body) -> bool:
            return status == 0 and not self.TxnResponse.FromString(body).succeeded
        self.send(self.flight["events"], self.pool_for(key), TXN, msg, t, tally, handle)

    async def step(self, scale: float, t0: float, ramp: float, measure: float, drain: float) -> dict:
        """Issues every stream on its schedule: a linear ramp from 0 over [t0, t0 + ramp], then
        the full rate for `measure` seconds, of which the requests are counted."""
        issue = {"leases": self.heartbeat, "pods": self.pod_write, "events": self.event}
        rates = {s: BASE[s] * scale / self.n for s in STREAMS}
        tallies = {s: Tally() for s in STREAMS}
        # Each process's schedule is offset by its share of an interval, so together they are
        # evenly spaced.
        offset = {s: self.w / (rates[s] * self.n) for s in STREAMS}
        issued = dict.fromkeys(STREAMS, 0)
        start, end = t0 + ramp, t0 + ramp + measure

        def due_by(s: str, dt: float) -> int:  # requests of s scheduled in [t0, t0 + dt)
            r, x = rates[s], dt - offset[s]
            if x <= 0:
                return 0
            if x < ramp:
                return math.ceil(r * x * x / (2 * ramp))
            return math.ceil(r * ramp / 2 + r * (x - ramp))

        def when(s: str, k: int) -> float:  # the scheduled time of request k of s
            r = rates[s]
            half = r * ramp / 2
            x = math.sqrt(2 * ramp * k / r) if k < half else ramp + (k - half) / r
            return t0 + offset[s] + x

        monotonic = time.monotonic
        tick = self.cfg["tick"]
        await asyncio.sleep(max(0.0, t0 - monotonic()))
        while True:
            now = monotonic()
            horizon = min(now, end) - t0
            for s in STREAMS:
                due = due_by(s, horizon)
                k = issued[s]
                if k < due:
                    fire, tally = issue[s], tallies[s]
                    for j in range(k, due):
                        t = when(s, j)
                        fire(t, tally if t >= start else None)
                    issued[s] = due
            if now >= end:
                break
            await asyncio.sleep(tick)
        stop = end + drain
        while monotonic() < stop:  # noqa: ASYNC110 - polls the answers still due, with a deadline
            if not self.inflight:  # the next step starts with no backlog (if it can)
                break
            await asyncio.sleep(0.01)
        return {"streams": {s: t.dump() for s, t in tallies.items()}, "pod_acked": self.pod_acked,
                "watch_events": self.watch_events, "watch_error": self.watch_error,
                "grants": self.grants, "grant_errors": self.grant_errors, "inflight": self.inflight}

    async def serve(self, pipe) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cmd, *a = await loop.run_in_executor(None, pipe.recv)
            try:
                if cmd == "connect":
                    out = await self.connect()
                elif cmd == "prepare":
                    out = await self.prepare()
                elif cmd == "step":
                    out = await self.step(*a)
                elif cmd == "counts":
                    out = {"watch_events": self.watch_events, "watch_error": self.watch_error,
                           "pod_acked": self.pod_acked}
                else:
                    for pool in self.pools.values():
                        for c in pool.conns:
                            c.close()
                    pipe.send({})
                    return
            except Exception:  # noqa: BLE001 - reported to the coordinator, which fails the setup
                out = {"error": traceback.format_exc()}
            pipe.send(out)


def generator_main(pipe, cfg: dict) -> None:
    if cfg["nice"]:
        try:  # before any thread starts: threads inherit it
            os.setpriority(os.PRIO_PROCESS, 0, cfg["nice"])
        except OSError as e:
            log(f"generator {cfg['worker']}: cannot set its nice value to {cfg['nice']}: {e}")
    with contextlib.suppress(ImportError):
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(Generator(cfg).serve(pipe))


class Generators:
    """--procs generator processes, commanded over pipes, all at once."""

    def __init__(self, cfgs: list[dict]):
        ctx = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        for cfg in cfgs:
            ours, theirs = ctx.Pipe()
            p = ctx.Process(target=generator_main, args=(theirs, cfg), daemon=True,
                            name=f"kube-gen-{cfg['worker']}")
            p.start()
            self.pipes.append(ours)
            self.procs.append(p)

    def ask(self, *cmd, timeout: float = 120, only: int | None = None) -> list[dict]:
        targets = [only] if only is not None else range(len(self.pipes))
        for i in targets:
            self.pipes[i].send(cmd)
        out = []
        deadline = time.monotonic() + timeout
        for i in targets:
            if not self.pipes[i].poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"generator {i} did not answer {cmd[0]!r} in {timeout:.0f} s")
            reply = self.pipes[i].recv()
            if "error" in reply:
                raise RuntimeError(f"generator {i}, {cmd[0]}: {reply['error']}")
            out.append(reply)
        return out

    def cpu(self) -> float:
        return sum(proc_tree_cpu(p.pid) or 0.0 for p in self.procs)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            for pipe in self.pipes:
                pipe.send(("stop",))
        for p in self.procs:
            p.join(2)  # one still in a step (Ctrl-C) does not read its pipe: killed
            if p.is_alive():
                p.kill()
                p.join(5)


# ---------------------------------------------------------------------------------------------
# the setups' servers


def own_cpu(pid: int) -> float:
    """utime+stime of one process (all its threads), without its children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def worker_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    for i, a in enumerate(argv):
        if a.startswith("--name="):
            return a.split("=", 1)[1]
        if a == "--name" and i + 1 < len(argv):
            return argv[i + 1]
    return str(pid)


def kvstore_env() -> dict:
    env = child_env()
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def kvstore_build() -> str:
    """The build the servers (and the generator's HTTP/2 parsing) will run: the pure-Python
    twins are refused."""
    probe = ("import kvstore.mvcc as m; "
             "from kvstore.server.transport.h2 import hpack_select as h, frame_reader_select as f; "
             "print(m.COMPILED and h.COMPILED and f.COMPILED)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=kvstore_env(), timeout=60)
    if out.stdout.strip() != "True":
        sys.exit("error: kvstore's compiled extensions are not importable (pip install -e . builds "
                 f"them); refusing to measure the pure-Python twins. {out.stderr.strip()[-500:]}")
    return "compiled"


def profile_flag_available() -> bool:
    """Whether `kvstore serve` has --profile (the supervisor) yet."""
    out = subprocess.run([sys.executable, "-m", "kvstore", "serve", "--help"], capture_output=True,
                         text=True, env=kvstore_env(), timeout=60, cwd=str(REPO))
    return "--profile" in out.stdout


def free_port_block(n: int = PORT_BLOCK) -> int:
    """P such that P..P+n-1 are free on 127.0.0.1, below the ephemeral range (so no client
    socket takes one meanwhile)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


class Proc(Server):
    """A server process with a given command (its log in workdir/NAME.log)."""

    def __init__(self, name: str, workdir: Path, port: int, cmd: list[str], env: dict):
        self.name = name
        super().__init__(workdir, False)
        self.port = port
        self.cmd = cmd
        self._env = env

    def command(self) -> list[str]:
        return self.cmd

    def env(self) -> dict:
        return self._env


class NamedEtcd(EtcdServer):
    def __init__(self, name: str, workdir: Path, port: int, etcd_bin: str, quota: int):
        self.name = name
        super().__init__(workdir, False, etcd_bin, quota)
        self.port = port  # its peer port is an ephemeral one, above every port block


class Setup:
    def __init__(self, key: str, workdir: Path, args):
        self.key = key
        self.name, self.label = SETUPS[key]
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True)
        self.partitioned = key in ("b", "d")
        self.port = free_port_block() if self.partitioned else free_port()
        self.servers: list[Server] = []
        self.health_port: int | None = None  # the supervisor's /health
        self.how = ""
        if key == "a":
            srv = KvstoreServer(self.workdir, False, [])
            srv.port = self.port
            self.servers = [srv]
            self.how = "kvstore serve --log-backend lmdb"
        elif key == "c":
            srv = EtcdServer(self.workdir, False, args.etcd_bin, args.quota_backend_bytes)
            srv.port = self.port
            self.servers = [srv]
            self.how = "etcd"
        elif key == "d":
            self.servers = [NamedEtcd(f"etcd-{p.name}", self.workdir, int(p.url.rsplit(":", 1)[1]),
                                      args.etcd_bin, args.quota_backend_bytes)
                            for p in kube_map("127.0.0.1", self.port)]
            self.how = "5 x etcd, ports of kube_map"
        else:
            mode = args.kube_workers
            if mode == "auto":
                mode = "supervisor" if profile_flag_available() else "processes"
            url = f"http://127.0.0.1:{self.port}"
            if mode == "supervisor":
                self.servers = [Proc("supervisor", self.workdir, self.port, [
                    sys.executable, "-m", "kvstore", "serve", "--profile", "kube",
                    "--data-dir", str(self.workdir / "data"), "--listen-client-urls", url],
                    kvstore_env())]
                self.health_port = self.port + METRICS_PORT_OFFSET
                self.how = "kvstore serve --profile kube (supervisor + 5 workers)"
            else:
                self.servers = [Proc(p.name, self.workdir, int(p.url.rsplit(":", 1)[1]), [
                    sys.executable, "-m", "kvstore", "serve", "--name", p.name,
                    "--data-dir", str(self.workdir / "data" / p.name),
                    "--listen-client-urls", p.url], kvstore_env())
                    for p in kube_map("127.0.0.1", self.port)]
                self.how = ("5 x kvstore serve started by this script" +
                            (" (no --profile in the CLI yet)" if args.kube_workers == "auto" else ""))

    def ports(self) -> list[int]:
        if self.partitioned:
            return [int(p.url.rsplit(":", 1)[1]) for p in kube_map("127.0.0.1", self.port)]
        return [self.port]

    def start(self) -> None:
        for s in self.servers:
            s.start()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.died():
                raise RuntimeError(self.died())
            if all(tcp_open(p) for p in self.ports()) and self._healthy():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        if self.health_port is None:
            return True
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=2)
            c.request("GET", "/health")
            return c.getresponse().status == 200
        except OSError:
            return False

    def cpu(self) -> float:
        return sum(s.cpu() or 0.0 for s in self.servers)

    def cpu_by_process(self) -> dict[str, float]:
        """CPU-seconds of each server process (its threads; a supervisor's workers apart,
        named by their --name), for the partitioned setups."""
        out: dict[str, float] = {}
        for s in self.servers:
            if s.proc is None:
                continue
            if s.name != "supervisor":
                out[s.name] = s.cpu() or 0.0
                continue
            out["supervisor"] = own_cpu(s.proc.pid)
            for pid in child_pids(s.proc.pid):
                out[worker_name(pid)] = proc_tree_cpu(pid) or 0.0
        return out

    def died(self) -> str | None:
        for s in self.servers:
            if s.died_reason():
                return f"{s.died_reason()} (log: {s.log_path})"
        return None

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


# ---------------------------------------------------------------------------------------------
# the coordinator


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def merge_stream(stream: str, scale: float, measure: float, parts: list[dict]) -> dict:
    lat: list[float] = []
    lag: list[float] = []
    kinds: Counter = Counter()
    agg = dict.fromkeys(("ok", "errors", "skipped", "conflicts", "unfinished"), 0)
    for part in parts:
        lat.extend(array("d", part["lat"]))
        lag.extend(array("d", part["lag"]))
        kinds.update(part["kinds"])
        for k in agg:
            agg[k] += part[k]
    lat.extend([math.inf] * agg["unfinished"])  # never answered: slower than anything
    lat.sort()
    lag.sort()
    offered = BASE[stream] * scale
    row = {"offered_per_s": offered, "achieved_per_s": agg["ok"] / measure,
           "p50_ms": percentile(lat, 0.50) * 1000, "p99_ms": percentile(lat, 0.99) * 1000,
           "send_lag_p99_ms": percentile(lag, 0.99) * 1000, **agg, "error_kinds": dict(kinds)}
    why = []
    if row["achieved_per_s"] < GOAL_ACHIEVED * offered:
        why.append(f"{stream} {row['achieved_per_s'] / offered:.0%} of offered")
    if not row["p99_ms"] <= GOAL_P99 * 1000:
        why.append(f"{stream} p99 {fmt_ms(row['p99_ms'])} ms")
    if agg["errors"]:
        why.append(f"{stream} {agg['errors']} errors")
    if agg["skipped"]:
        why.append(f"{stream} {agg['skipped']} not sent (in-flight cap)")
    row["why_not"] = why
    return row


def run_setup(setup: Setup, args, scales: list[float]) -> dict:
    out: dict = {"setup": setup.key, "name": setup.name, "label": setup.label, "how": setup.how,
                 "steps": [], "error": None}
    gens = None
    try:
        log(f"[{setup.name}] starting: {setup.how}")
        setup.start()
        setup.wait_ready(args.start_timeout)
        cfgs = [{"worker": w, "procs": args.procs, "port": setup.port,
                 "partitioned": setup.partitioned, "client": args.client, "conns": args.conns,
                 "max_inflight": args.max_inflight, "tick": args.tick, "nice": args.generator_nice,
                 "lease_keys": args.lease_keys, "pods": args.pods, "lease_value": 400,
                 "pod_value": 4096, "event_value": 1024, "lease_reuse": args.lease_reuse_seconds}
                for w in range(args.procs)]
        gens = Generators(cfgs)
        eps = gens.ask("connect")[0]["endpoints"]
        log(f"[{setup.name}] generator connected to {', '.join(eps)}; creating keys")
        t = time.monotonic()
        gens.ask("prepare", timeout=300)
        log(f"[{setup.name}] {args.lease_keys} lease keys and {args.pods} pods created in "
            f"{time.monotonic() - t:.1f} s")
        watch_seen, acked_seen = sync_watch(gens)
        misses = 0
        for scale in scales:
            t0 = time.monotonic() + 0.3
            for pipe in gens.pipes:
                pipe.send(("step", scale, t0, args.ramp_seconds, args.step_seconds, args.drain_seconds))
            time.sleep(max(0.0, t0 + args.ramp_seconds - time.monotonic()))
            s0, g0, b0, p0 = setup.cpu(), gens.cpu(), cpu_busy(), setup.cpu_by_process()
            time.sleep(max(0.0, t0 + args.ramp_seconds + args.step_seconds - time.monotonic()))
            s1, g1, b1, p1 = setup.cpu(), gens.cpu(), cpu_busy(), setup.cpu_by_process()
            replies = []
            for i, pipe in enumerate(gens.pipes):
                if not pipe.poll(args.drain_seconds + 60):
                    raise RuntimeError(f"generator {i} did not finish the step")
                reply = pipe.recv()
                if "error" in reply:
                    raise RuntimeError(f"generator {i}, step: {reply['error']}")
                replies.append(reply)
            acked = sum(r["pod_acked"] for r in replies)
            watch_now, _ = sync_watch(gens, acked)
            busy = sum(b1.values()) - sum(b0.values()) if b0 and b1 else float("nan")
            step = {"scale": scale,
                    "streams": {s: merge_stream(s, scale, args.step_seconds,
                                                [r["streams"][s] for r in replies]) for s in STREAMS},
                    "server_cpu_s": s1 - s0, "generator_cpu_s": g1 - g0,
                    "server_cpu_s_by_process": {k: v - p0.get(k, 0.0) for k, v in p1.items()},
                    "other_cpu_s": busy - (s1 - s0) - (g1 - g0),
                    "watch_events": watch_now - watch_seen, "pod_writes_acked": acked - acked_seen,
                    "watch_error": replies[0]["watch_error"],
                    "lease_grants_so_far": sum(r["grants"] for r in replies),
                    "lease_grant_errors": sum(r["grant_errors"] for r in replies),
                    "left_in_flight": sum(r["inflight"] for r in replies)}
            watch_seen, acked_seen = watch_now, acked
            step["offered_per_s"] = sum(v["offered_per_s"] for v in step["streams"].values())
            step["achieved_per_s"] = sum(v["achieved_per_s"] for v in step["streams"].values())
            step["why_not"] = [w for v in step["streams"].values() for w in v["why_not"]]
            step["sustained"] = not step["why_not"]
            out["steps"].append(step)
            log(f"[{setup.name}] x{scale:g}: {step['achieved_per_s']:,.0f}/{step['offered_per_s']:,.0f} "
                f"req/s, p99 " + " ".join(f"{s} {fmt_ms(v['p99_ms'])}" for s, v in step["streams"].items())
                + f" ms; server {step['server_cpu_s'] / args.step_seconds:.2f} cores, generator "
                f"{step['generator_cpu_s'] / args.step_seconds:.2f}; "
                + ("sustained" if step["sustained"] else "NOT sustained: " + "; ".join(step["why_not"])))
            if setup.died():
                raise RuntimeError(setup.died())
            misses = 0 if step["sustained"] else misses + 1
            if misses >= 2:
                break
    except Exception as e:  # noqa: BLE001 - a setup that fails is reported, the run goes on
        out["error"] = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        log(f"[{setup.name}] FAILED: {e}")
    finally:
        if gens is not None:
            gens.stop()
        setup.stop()
    return out


def sync_watch(gens: Generators, acked: int | None = None) -> tuple[int, int]:
    """(watch events received, pod writes acknowledged), once the watch caught up with the
    writes (or 3 s passed)."""
    if acked is None:
        acked = sum(r["pod_acked"] for r in gens.ask("counts"))
    deadline = time.monotonic() + 3
    while True:
        seen = gens.ask("counts", only=0)[0]["watch_events"]
        if seen >= acked or time.monotonic() > deadline:
            return seen, acked
        time.sleep(0.05)


def medium_of(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True).stdout
    fstype = out.split()[-1] if out.split() else "?"
    return "tmpfs" if fstype == "tmpfs" else f"disk ({fstype})"


def etcd_version(etcd_bin: str) -> str:
    try:
        out = subprocess.run([etcd_bin, "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


# ---------------------------------------------------------------------------------------------
# the report


def fmt_ms(x: float) -> str:
    if x != x:
        return "–"
    if math.isinf(x):
        return "∞"
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def best_sustained(r: dict) -> dict | None:
    good = [s for s in r["steps"] if s["sustained"]]
    return max(good, key=lambda s: s["achieved_per_s"]) if good else None


def report(results: list[dict], meta: dict, measure: float) -> tuple[str, dict]:
    lines = [f"kvstore {meta['git']['head']}{' +changes' if meta['git']['changed'] else ''}, "
             f"{meta['build']} build; etcd {meta['etcd_version']}; data on {meta['medium']}; "
             f"{os.cpu_count()} CPUs shared by the servers and the generator ({meta['procs']} "
             f"processes, nice {meta['generator_nice']}, client {meta['client']}, {meta['conns']} "
             "connections per endpoint each)",
             f"steps: {meta['ramp_seconds']:g} s ramp + {measure:g} s measured; x1 = "
             + " + ".join(f"{BASE[s]:,.0f} {s}/s" for s in STREAMS)
             + f"; sustained: every stream >= {GOAL_ACHIEVED:.0%} of offered, p99 <= "
             f"{GOAL_P99 * 1000:.0f} ms, no errors, nothing over the in-flight cap"]
    for r in results:
        lines += ["", f"### ({r['setup']}) {r['name']}: {r['label']}", f"{r['how']}"]
        if r["error"]:
            lines.append(f"**FAILED**: {r['error']}")
        if not r["steps"]:
            continue
        lines += ["", "| scale | stream | offered/s | achieved/s | p50 ms | p99 ms | errors | "
                  "Else | send lag p99 ms | server CPU-s (cores) | generator CPU-s (cores) | "
                  "other CPU-s | watch events / pod writes | sustained |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for st in r["steps"]:
            for s, v in st["streams"].items():
                err = f"{v['errors']}" + (f" +{v['skipped']} not sent" if v["skipped"] else "")
                if v["unfinished"]:
                    err += f" +{v['unfinished']} unanswered"
                lines.append(f"| x{st['scale']:g} | {s} | {v['offered_per_s']:,.0f} | "
                             f"{v['achieved_per_s']:,.0f} | {fmt_ms(v['p50_ms'])} | "
                             f"{fmt_ms(v['p99_ms'])} | {err} | {v['conflicts']} | "
                             f"{fmt_ms(v['send_lag_p99_ms'])} | | | | | |")
            watch = f"{st['watch_events']:,} / {st['pod_writes_acked']:,}"
            if st["watch_error"]:
                watch += f" ({st['watch_error']})"
            lines.append(f"| x{st['scale']:g} | **total** | {st['offered_per_s']:,.0f} | "
                         f"{st['achieved_per_s']:,.0f} | | | | | | {st['server_cpu_s']:.1f} "
                         f"({st['server_cpu_s'] / measure:.2f}) | {st['generator_cpu_s']:.1f} "
                         f"({st['generator_cpu_s'] / measure:.2f}) | {st['other_cpu_s']:.1f} | "
                         f"{watch} | {'yes' if st['sustained'] else 'no: ' + '; '.join(st['why_not'])} |")
        if len(r["steps"][0]["server_cpu_s_by_process"]) > 1:
            lines.append("")
            lines += [f"server cores by process at x{st['scale']:g}: " + ", ".join(
                f"{k} {v / measure:.2f}" for k, v in sorted(
                    st["server_cpu_s_by_process"].items(), key=lambda kv: -kv[1]))
                for st in r["steps"]]
        kinds = Counter()
        for st in r["steps"]:
            for v in st["streams"].values():
                kinds.update(v["error_kinds"])
        if kinds:
            lines.append("errors seen: " + "; ".join(f"{n} x {k}" for k, n in kinds.most_common(5)))
    by = {r["setup"]: r for r in results}
    best = {k: best_sustained(r) for k, r in by.items()}
    summary: dict = {"best": {}, "ratios": {}, "goals": {}}
    lines += ["", "### summary", "", "| setup | highest sustained step | total req/s there | "
              "server cores there | generator cores there |", "|---|---|---|---|---|"]
    for k, r in by.items():
        b = best[k]
        summary["best"][k] = ({"scale": b["scale"], "achieved_per_s": b["achieved_per_s"]}
                              if b else None)
        lines.append(f"| ({k}) {r['name']} | " + (
            f"x{b['scale']:g} | {b['achieved_per_s']:,.0f} | {b['server_cpu_s'] / measure:.2f} | "
            f"{b['generator_cpu_s'] / measure:.2f} |" if b else
            ("failed: " + r["error"] if r["error"] and not r["steps"] else "none") + " | 0 | | |"))
    lines.append("")

    def total(k: str) -> float | None:
        if k not in by:
            return None
        return best[k]["achieved_per_s"] if best[k] else 0.0

    for num, den in (("b", "d"), ("b", "a"), ("a", "c")):
        a, b = total(num), total(den)
        ratio = a / b if a is not None and b else None
        summary["ratios"][f"{num}/{den}"] = ratio
        lines.append(f"* ({num})/({den}) highest sustained total: "
                     + (f"**{ratio:.2f}x**" if ratio is not None else "–"))
    if "b" in by:
        at1 = [s for s in by["b"]["steps"] if s["scale"] == 1.0]
        g1 = bool(at1 and at1[0]["sustained"])
        summary["goals"]["b_sustains_x1"] = g1
        last = by["b"]["steps"][-1]["scale"] if by["b"]["steps"] else None
        why = "" if g1 else (": " + "; ".join(at1[0]["why_not"]) if at1 else
                             f": x1 not reached (stopped after x{last:g})" if last else ": no step ran")
        lines.append(f"* goal: (b) sustains x1 (10k + 1k + 500 per s) with every p99 <= 100 ms: "
                     f"**{'met' if g1 else 'not met'}**{why}")
        if "d" in by:
            g2 = bool(total("d") is not None and total("b") >= 2 * total("d") and total("b") > 0)
            summary["goals"]["b_at_least_2x_d"] = g2
            lines.append(f"* goal: (b)'s highest sustained total >= 2x (d)'s: "
                         f"**{'met' if g2 else 'not met'}**")
    return "\n".join(lines), summary


def interrupted(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_scales(s: str) -> list[float]:
    return sorted({float(x) for x in s.split(",") if x.strip() and float(x) > 0})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", default="a,b,c,d", help="any of a,b,c,d (see above)")
    ap.add_argument("--scales", default=DEFAULT_SCALES, help="multiples of the base mix, in order")
    ap.add_argument("--max-scale", type=float, default=4.0)
    ap.add_argument("--step-seconds", type=float, default=8.0, help="measured part of a step")
    ap.add_argument("--ramp-seconds", type=float, default=2.0, help="linear ramp before it")
    ap.add_argument("--drain-seconds", type=float, default=3.0,
                    help="how long a step waits for its last answers (later: unanswered)")
    ap.add_argument("--medium", choices=("disk", "tmpfs"), default="disk",
                    help="where every setup's data dirs go: a temp dir under /tmp, or /dev/shm")
    ap.add_argument("--procs", type=int, default=2, help="generator processes")
    ap.add_argument("--conns", type=int, default=2, help="connections per endpoint and process")
    ap.add_argument("--client", choices=("raw", "grpc"), default="raw",
                    help="raw: the generator's own HTTP/2 gRPC client; grpc: grpc.aio")
    ap.add_argument("--max-inflight", type=int, default=2000,
                    help="cap of requests in flight per generator process and stream")
    ap.add_argument("--generator-nice", type=int, default=-10,
                    help="nice value of the generator processes (0: as the servers): the load "
                         "comes from elsewhere in a real cluster, so it should not queue behind "
                         "the servers for a core; it uses well under one")
    ap.add_argument("--tick", type=float, default=0.002, help="the generator's send interval, s")
    ap.add_argument("--lease-keys", type=int, default=10_000)
    ap.add_argument("--lease-reuse-seconds", type=float, default=60.0,
                    help="how long one event lease is used (kube-apiserver's "
                         "--lease-reuse-duration-seconds)")
    ap.add_argument("--pods", type=int, default=1_000, help="pods created before the steps")
    ap.add_argument("--kube-workers", choices=("auto", "supervisor", "processes"), default="auto",
                    help="(b): `serve --profile kube`, or 5 plain workers started here; auto: "
                         "the supervisor when `kvstore serve --help` lists --profile")
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--quota-backend-bytes", type=int, default=8 << 30,
                    help="etcd's (nothing is compacted during a run)")
    ap.add_argument("--start-timeout", type=float, default=60)
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and server logs")
    args = ap.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if bad := [s for s in setups if s not in SETUPS]:
        ap.error(f"unknown setups {bad}: choose from {','.join(SETUPS)}")
    scales = [x for x in parse_scales(args.scales) if x <= args.max_scale]
    if not scales:
        ap.error("no step at or below --max-scale")
    check_encoders()
    build = kvstore_build()
    root = Path(tempfile.mkdtemp(prefix="kvstore-kubeprofile-",
                                 dir="/dev/shm" if args.medium == "tmpfs" else "/tmp"))
    meta = {"git": git_state(), "build": build, "etcd_version": etcd_version(args.etcd_bin),
            "medium": medium_of(root), "workdir": str(root), "procs": args.procs,
            "client": args.client, "conns": args.conns, "ramp_seconds": args.ramp_seconds,
            "generator_nice": args.generator_nice, "max_inflight": args.max_inflight,
            "step_seconds": args.step_seconds, "scales": scales, "base": BASE,
            "argv": sys.argv[1:]}
    log(f"data dirs under {root} ({meta['medium']}); {build} build; steps x"
        + ", x".join(f"{x:g}" for x in scales))
    results = []
    signal.signal(signal.SIGTERM, interrupted)  # stop every server, as on Ctrl-C
    try:
        for key in setups:
            results.append(run_setup(Setup(key, root, args), args, scales))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text, summary = report(results, meta, args.step_seconds)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results, "summary": summary},
                                              indent=1, default=str))
    return 0 if all(not r["error"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
