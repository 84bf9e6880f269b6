#!/usr/bin/env python3
"""kube-apiserver's update transaction, kvstore next to a real etcd in the same run.

Every object update kube-apiserver makes (GuaranteedUpdate) is one Txn:

    If(mod_revision(key) == rv) Then(Put(key, obj)) Else(Range(key))

This drives that shape against each server from this process (grpc.aio, --clients concurrent
updaters over --keys keys of --value-size bytes). Each updater remembers the revision it last
saw of each key, as the apiserver's cache does: a Put answer gives the new one, a failed compare
gives the current object from the Else Range, and the updater retries on it. --stale makes that
share of updates start from an old revision (a stale cache), so the Else branch is exercised
as well. Reports txns per second and per server CPU-second (utime+stime from /proc), the
share of txns that took the Else branch, and kvstore's ratios to etcd.

    python3 bench/kube_txn.py [--total 20000] [--clients 64] [--pin]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from etcd_side_by_side import EtcdServer, KvstoreServer, log, tcp_open  # noqa: E402
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402

MOD = pb.Compare.MOD
EQUAL = pb.Compare.EQUAL


def key_of(i: int) -> bytes:
    return b"/registry/pods/default/pod-%06d" % i


def update_txn(key: bytes, rev: int, value: bytes) -> pb.TxnRequest:
    return pb.TxnRequest(
        compare=[pb.Compare(key=key, target=MOD, result=EQUAL, mod_revision=rev)],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))])


async def drive(endpoint: str, args) -> dict:
    value = b"x" * args.value_size
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = rpc.KVStub(ch)
        seen: dict[bytes, int] = {}
        for i in range(args.keys):
            resp = await kv.Put(pb.PutRequest(key=key_of(i), value=value))
            seen[key_of(i)] = resp.header.revision
        rng = random.Random(1)
        remaining = args.total
        stats = {"txns": 0, "else": 0}

        async def updater():
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                key = key_of(rng.randrange(args.keys))
                rev = seen[key] - 1 if rng.random() < args.stale else seen[key]
                while True:
                    resp = await kv.Txn(update_txn(key, rev, value))
                    stats["txns"] += 1
                    if resp.succeeded:
                        seen[key] = resp.header.revision
                        break
                    stats["else"] += 1
                    rev = resp.responses[0].response_range.kvs[0].mod_revision  # retry on it

        t0 = time.perf_counter()
        await asyncio.gather(*(updater() for _ in range(args.clients)))
        stats["seconds"] = time.perf_counter() - t0
        return stats


def run(server, args) -> dict:
    from etcd_side_by_side import proc_tree_cpu

    server.start()
    try:
        deadline = time.monotonic() + 60
        while not tcp_open(server.port):
            if time.monotonic() > deadline or server.died_reason():
                return {"error": server.died_reason() or "did not start"}
            time.sleep(0.1)
        time.sleep(0.5)
        cpu0 = proc_tree_cpu(server.proc.pid)
        stats = asyncio.run(drive(server.endpoint, args))
        stats["cpu"] = proc_tree_cpu(server.proc.pid) - cpu0
        log(f"[{server.name}] {stats}")
        return stats
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total", type=int, default=20000, help="updates (each one or more txns)")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--value-size", type=int, default=1024)
    p.add_argument("--stale", type=float, default=0.1)
    p.add_argument("--pin", action="store_true", help="servers on CPU 0, this client on CPU 1")
    p.add_argument("--servers", default="etcd,kvstore")
    p.add_argument("--etcd-bin", default="/usr/bin/etcd")
    args = p.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})

    results = {}
    with tempfile.TemporaryDirectory(prefix="kvstore-kubetxn-") as tmp:
        for name in args.servers.split(","):
            server = (EtcdServer(Path(tmp), args.pin, args.etcd_bin, 8 * 1024**3) if name == "etcd"
                      else KvstoreServer(Path(tmp), args.pin, []))
            results[name] = run(server, args)

    print(f"\nkube update Txn: {args.total:,} updates, {args.clients} clients, {args.keys} keys x "
          f"{args.value_size} B, {args.stale:.0%} from a stale revision\n")
    print("| server | txns | Else branch | txn/s | server CPU-s | txn per CPU-s | ratio to etcd |")
    print("|---|---|---|---|---|---|---|")
    base = results.get("etcd", {})
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        per_cpu = r["txns"] / r["cpu"] if r["cpu"] else float("nan")
        ratio = ""
        if "txns" in base and base.get("cpu"):
            ratio = f"{per_cpu / (base['txns'] / base['cpu']):.2f}x"
        print(f"| {name} | {r['txns']} | {r['else'] / r['txns']:.1%} | {r['txns'] / r['seconds']:,.0f} | "
              f"{r['cpu']:.2f} | {per_cpu:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
