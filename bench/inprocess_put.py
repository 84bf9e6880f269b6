"""Server CPU per unary request, in process: no sockets, no load generator, no other core.

Feeds one H2ServerConnection the bytes a gRPC client sends (preface, then HEADERS + DATA per call,
in bursts of --burst calls per read) and counts CPU time until every response has been
written to a transport that only counts bytes. The store is real (memory log, so no disk
work); everything the main thread of a server does per request is in the figure, except the
socket system calls and the event loop's polling. Use it for A/B comparisons of the request
path and, with --profile, to see where the time goes (cProfile, sorted by internal time).

    python3 bench/inprocess_put.py [--requests N] [--burst K] [--method put|range|txn] [--profile]
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import time

import uvloop

import kvstore
from kvstore.api import rpc_pb2 as pb
from kvstore.h2 import frames as f
from kvstore.h2.hpack import Encoder
from kvstore.server import gc_policy
from kvstore.server.services import all_services
from kvstore.server.services.interceptor import CallInterceptor
from kvstore.server.transport.h2.server import H2Server

_PREFIX = struct.Struct(">BL")


class CountingTransport:
    """What the connection writes to: counts the responses' bytes, sends nothing."""

    def __init__(self):
        self.bytes = 0
        self.writes = 0

    def write(self, data) -> None:
        self.bytes += len(data)
        self.writes += 1

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:  # the connection holds its input while writes wait
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default


def topped_up(conn) -> bytes:
    """The WINDOW_UPDATE a client sends to give back the connection window our responses used
    (read from the connection: this harness has no client to count it)."""
    used = f.MAX_WINDOW - conn._conn_send_window
    return f.window_update(0, used) if used > f.MAX_WINDOW // 2 else b""


def request_bytes(enc: Encoder, sid: int, path: bytes, message) -> bytes:
    """One call as grpc-go sends it (its usual headers; the dynamic table does the rest)."""
    block = enc.encode([(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                        (b":authority", b"127.0.0.1:2379"), (b"content-type", b"application/grpc"),
                        (b"user-agent", b"grpc-go/1.26.0"), (b"te", b"trailers")])
    body = message.SerializeToString()
    return (f.frame(f.HEADERS, f.END_HEADERS, sid, block)
            + f.frame(f.DATA, f.END_STREAM, sid, _PREFIX.pack(0, len(body)) + body))


async def run(requests: int, burst: int, method: str, profile: bool) -> None:
    store = await kvstore.Store.open("memory")
    gc_policy.settle_after_recovery()  # as `kvstore serve` does
    server = H2Server(all_services(store), 1 << 21, intercept=CallInterceptor(store))
    conn = server._protocol()
    transport = CountingTransport()
    conn.connection_made(transport)
    conn.data_received(f.PREFACE + f.settings({f.INITIAL_WINDOW_SIZE: 1 << 30})
                       + f.window_update(0, f.MAX_WINDOW - f.DEFAULT_WINDOW))
    await asyncio.sleep(0)
    enc = Encoder()
    if method == "range":
        await store.put(pb.PutRequest(key=b"r", value=b"x" * 256))
        path, make = b"/etcdserverpb.KV/Range", lambda i: pb.RangeRequest(key=b"r", serializable=True)
    elif method == "txn":  # kube's update: If(mod_revision) Then(Put) Else(Range); always Then
        def make(i):
            key = b"/registry/leases/kube-node-lease/node-%05d" % (i * 7919 % 10000)
            return pb.TxnRequest(
                compare=[pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.LESS,
                                    mod_revision=1 << 62)],
                success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"v" * 400))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))])
        path = b"/etcdserverpb.KV/Txn"
    else:
        path, make = b"/etcdserverpb.KV/Put", lambda i: pb.PutRequest(
            key=b"%08d" % (i * 7919 % 100000), value=b"v" * 256)
    sid = 1
    chunks = []
    for start in range(0, requests, burst):
        parts = []
        for i in range(start, min(requests, start + burst)):
            parts.append(request_bytes(enc, sid, path, make(i)))
            sid += 2
        chunks.append(b"".join(parts))
    prof = cProfile.Profile() if profile else None
    t0 = time.process_time()
    if prof:
        prof.enable()
    for chunk in chunks:
        conn.data_received(topped_up(conn) + chunk)
        while conn.streams:  # until every call of the burst has answered
            await asyncio.sleep(0)
            if update := topped_up(conn):
                conn.data_received(update)
    await asyncio.sleep(0)
    if prof:
        prof.disable()
    cpu = time.process_time() - t0
    assert store.mvcc.current_rev >= (requests + 1 if method != "range" else 2)
    print(f"{method}: {requests} requests in bursts of {burst}: {1e6 * cpu / requests:.2f} µs CPU "
          f"per request ({requests / cpu:,.0f} per CPU-second), {transport.writes} writes, "
          f"{transport.bytes} bytes out")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=50_000)
    p.add_argument("--burst", type=int, default=16)
    p.add_argument("--method", choices=("put", "range", "txn"), default="put")
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    uvloop.run(run(a.requests, a.burst, a.method, a.profile))


if __name__ == "__main__":
    main()
