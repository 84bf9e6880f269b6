#!/usr/bin/env python3
"""A large LIST, kvstore next to a real etcd in the same run.

Loads --keys keys of --value-size bytes under one prefix (kube's shape:
/registry/pods/<ns>/<name>) into each server, then LISTs the whole prefix the ways
kube-apiserver does:

- paged Range, as its paging does: ``limit`` keys per page, the first page at the current
  revision, every later one pinned to that revision and starting at ``lastKey + "\\0"``;
  --limits 500,10000 by default;
- RangeStream (etcd 3.7; kvstore only: Debian's etcd 3.4 answers Unimplemented), one call.

For each: the wall time of the whole LIST (median of --repeat runs) and the server's RSS
growth during it (VmRSS sampled every millisecond, peak minus the value before), next to the
size of one page (the bytes of one full page's response) so the growth reads in pages.
Ratios are kvstore / etcd for the same paging, and RangeStream / etcd's paged LIST.

    python3 bench/list_large.py [--keys 100000] [--value-size 2048] [--pin]

Issue 5's goals: each LIST in at most 0.5x etcd's time; RSS growth at most 1.2x one page
(paged) or one flow-control window (stream), not the whole result.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from etcd_side_by_side import EtcdServer, KvstoreServer, log, tcp_open  # noqa: E402
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402

PREFIX = b"/registry/pods/"
MAX_MESSAGE = 2**31 - 1
# The client's HTTP/2 window: what a RangeStream may have in flight (grpcio's own default
# grows it by bandwidth probing; fixing it makes the bound known).
STREAM_WINDOW = 4 * 2**20


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def key_of(i: int) -> bytes:
    return PREFIX + b"ns-%03d/pod-%07d" % (i % 100, i)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Peak VmRSS of a process while running, sampled every millisecond on a thread."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.001)

    def __enter__(self):
        self.before = rss(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.before)


def settle(pid: int, quiet: float = 2.0, most: float = 60.0) -> None:
    """Waits until the server's RSS has moved less than 1 MiB over ``quiet`` seconds."""
    deadline = time.monotonic() + most
    last = rss(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = rss(pid)
        if abs(now - last) < 2**20:
            return
        last = now


async def load(endpoint: str, keys: int, value_size: int, concurrency: int = 64) -> None:
    value = b"v" * value_size
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = rpc.KVStub(ch)
        next_i = 0

        async def worker():
            nonlocal next_i
            while next_i < keys:
                i = next_i
                next_i += 1
                await kv.Put(pb.PutRequest(key=key_of(i), value=value))

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def paged_list(kv, limit: int) -> tuple[int, int]:
    """(keys, bytes of the first page's response) of a paged LIST of the whole prefix."""
    end = prefix_end(PREFIX)
    key, rev, got, page_bytes = PREFIX, 0, 0, 0
    while True:
        resp = kv.Range(pb.RangeRequest(key=key, range_end=end, limit=limit, revision=rev))
        if not page_bytes:
            page_bytes = resp.ByteSize()
        got += len(resp.kvs)
        rev = resp.header.revision if rev == 0 else rev
        if not resp.more:
            return got, page_bytes
        key = resp.kvs[-1].key + b"\0"


def stream_list(kv) -> tuple[int, int]:
    """(keys, largest chunk's bytes) of one RangeStream over the whole prefix."""
    got, largest = 0, 0
    for chunk in kv.RangeStream(pb.RangeRequest(key=PREFIX, range_end=prefix_end(PREFIX))):
        got += len(chunk.range_response.kvs)
        largest = max(largest, chunk.ByteSize())
    return got, largest


def run_server(server, args) -> dict:
    server.start()
    out: dict = {}
    try:
        deadline = time.monotonic() + 60
        while not tcp_open(server.port):
            if time.monotonic() > deadline or server.died_reason():
                return {"error": server.died_reason() or "did not start"}
            time.sleep(0.1)
        t0 = time.monotonic()
        asyncio.run(load(server.endpoint, args.keys, args.value_size))
        log(f"[{server.name}] loaded {args.keys} keys in {time.monotonic() - t0:.1f} s")
        settle(server.proc.pid)  # a snapshot after the load is not the LIST's memory
        options = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.http2.lookahead_bytes", STREAM_WINDOW),
                   ("grpc.http2.bdp_probe", 0)]
        with grpc.insecure_channel(server.endpoint, options=options) as ch:
            kv = rpc.KVStub(ch)
            modes = [(f"paged {limit}", lambda limit=limit: paged_list(kv, limit))
                     for limit in args.limits]
            if "kvstore" in server.name:
                modes.append(("RangeStream", lambda: stream_list(kv)))
            for name, fn in modes:
                times, growths = [], []
                for _ in range(args.repeat):
                    with RssSampler(server.proc.pid) as sampler:
                        t = time.perf_counter()
                        try:
                            got, unit = fn()
                        except grpc.RpcError as e:
                            out[name] = {"error": f"{e.code().name}: {e.details()}"}
                            break
                        times.append(time.perf_counter() - t)
                    growths.append(sampler.growth)
                    if got != args.keys:
                        out[name] = {"error": f"listed {got} keys, expected {args.keys}"}
                        break
                else:
                    out[name] = {"seconds": statistics.median(times), "rss_growth": max(growths),
                                 "unit_bytes": unit}
                log(f"[{server.name}] {name}: {out[name]}")
    finally:
        server.stop()
    return out


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--value-size", type=int, default=2048)
    p.add_argument("--limits", default="500,10000")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pin", action="store_true", help="servers on CPU 0, this client on CPU 1")
    p.add_argument("--servers", default="etcd,kvstore")
    p.add_argument("--etcd-bin", default="/usr/bin/etcd")
    args = p.parse_args()
    args.limits = [int(x) for x in args.limits.split(",")]
    if args.pin:
        import os
        os.sched_setaffinity(0, {1})

    results = {}
    with tempfile.TemporaryDirectory(prefix="kvstore-list-") as tmp:
        for name in args.servers.split(","):
            server = (EtcdServer(Path(tmp), args.pin, args.etcd_bin, 8 * 1024**3) if name == "etcd"
                      else KvstoreServer(Path(tmp), args.pin, []))
            results[name] = run_server(server, args)

    print(f"\nLIST of {args.keys:,} keys x {args.value_size} B, median of {args.repeat}\n")
    print("| server | LIST | time (s) | vs etcd | RSS growth (MiB) | page/chunk (MiB) | growth / page |")
    print("|---|---|---|---|---|---|---|")
    etcd = results.get("etcd", {})
    for server, modes in results.items():
        if "error" in modes:
            print(f"| {server} | failed: {modes['error']} | | | | | |")
            continue
        for name, r in modes.items():
            if "error" in r:
                print(f"| {server} | {name} | failed: {r['error']} | | | | |")
                continue
            ref = etcd.get(name) if name != "RangeStream" else min(
                (v for v in etcd.values() if "seconds" in v), key=lambda v: v["seconds"], default=None)
            ratio = f"{r['seconds'] / ref['seconds']:.2f}x" if ref and "seconds" in ref else ""
            unit = r["unit_bytes"] if name != "RangeStream" else STREAM_WINDOW
            print(f"| {server} | {name} | {r['seconds']:.3f} | {ratio} | {mib(r['rss_growth'])} | "
                  f"{mib(unit)} | {r['rss_growth'] / unit:.2f} |")
    print("\nRangeStream is compared with etcd's fastest paged LIST; its unit is the client's "
          f"flow-control window ({mib(STREAM_WINDOW)} MiB).")


if __name__ == "__main__":
    main()
