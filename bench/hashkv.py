"""HashKV's time on kvstore and on etcd, holding the same keys.

Starts Debian's ``etcd`` (3.4) and ``kvstore serve`` (LMDB log), each on a fresh temp data dir
(same medium) and a free port on 127.0.0.1, loads each with the same --keys keys of
--value-size bytes (in Txns of 128 puts), overwrites a tenth of them and compacts
at the revision before the overwrites, so the hash reads both kept and newer records. Then
times --runs HashKV calls on each, checks both report the same hash, and prints the best and
median times and kvstore's ×etcd (etcd's time / kvstore's: above 1 is faster).

    python3 bench/hashkv.py [--keys 200000] [--value-size 256] [--runs 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402
from procs import EtcdProcess, KvstoreProcess  # noqa: E402


def prepare(endpoint: str, keys: int, value_size: int) -> None:
    value = bytes(i % 251 for i in range(value_size))  # the same on both servers
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc.KVStub(ch)
        for lo in range(0, keys, 128):  # one at a time: the same revisions on both servers
            ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"/registry/pods/ns/%09d" % i, value=value))
                   for i in range(lo, min(keys, lo + 128))]
            kv.Txn(pb.TxnRequest(success=ops), timeout=60)
        rev = kv.Range(pb.RangeRequest(key=b"x"), timeout=10).header.revision
        for i in range(0, keys, 10):
            kv.Put(pb.PutRequest(key=b"/registry/pods/ns/%09d" % i, value=b"new"), timeout=10)
        kv.Compact(pb.CompactionRequest(revision=rev, physical=True), timeout=600)


def time_hashkv(endpoint: str, runs: int) -> tuple[list[float], int]:
    times, hashes = [], set()
    with grpc.insecure_channel(endpoint) as ch:
        m = rpc.MaintenanceStub(ch)
        for _ in range(runs):
            t0 = time.perf_counter()
            hashes.add(m.HashKV(pb.HashKVRequest(), timeout=600).hash)
            times.append(time.perf_counter() - t0)
    assert len(hashes) == 1, hashes
    return times, hashes.pop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=200_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        results = {}
        for name, cls in (("etcd", EtcdProcess), ("kvstore", KvstoreProcess)):
            with cls(Path(tmp) / name) as server:
                prepare(server.endpoint, args.keys, args.value_size)
                results[name] = time_hashkv(server.endpoint, args.runs)
        print(f"{args.keys} keys x {args.value_size} B, a tenth overwritten after a compaction; "
              f"data dirs under /tmp; {args.runs} HashKV calls each")
        for name, (times, h) in results.items():
            print(f"{name:8} best {min(times):.3f} s  median {statistics.median(times):.3f} s  hash {h}")
        (e, _), (k, _) = results["etcd"], results["kvstore"]
        print(f"kvstore x etcd (time ratio, best): {min(e) / min(k):.2f}; "
              f"same hash: {results['etcd'][1] == results['kvstore'][1]}")


if __name__ == "__main__":
    main()
