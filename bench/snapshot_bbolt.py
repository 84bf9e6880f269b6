"""Snapshot save throughput: ``etcdctl snapshot save`` against kvstore and against etcd.

Starts Debian's ``etcd`` (3.4) and ``kvstore serve`` (LMDB log), each on a fresh temp data dir
and a free port on 127.0.0.1, and loads each with the same --keys keys of --value-size bytes
(Txns of --txn-ops puts, so loading is quick). Then runs ``etcdctl snapshot save`` against each,
--runs times, the files going to the same temp dir (same medium), and prints for each server
the best run's wall time, the file's size, MB/s and keys/s, and kvstore's ×etcd.

What is measured differs in kind: etcd streams its db file as it is on disk (bbolt's
Tx.WriteTo); kvstore builds the db from its in-memory state first, then streams it. Both
streams end with the SHA-256 etcdctl checks.

    python3 bench/snapshot_bbolt.py [--keys 200000] [--value-size 256] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
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


def load(endpoint: str, keys: int, value_size: int, txn_ops: int) -> None:
    value = os.urandom(value_size // 2).hex().encode()[:value_size]
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc.KVStub(ch)
        futures = []
        for lo in range(0, keys, txn_ops):
            ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"/registry/pods/ns/%09d" % i,
                                                          value=value))
                   for i in range(lo, min(keys, lo + txn_ops))]
            futures.append(kv.Txn.future(pb.TxnRequest(success=ops), timeout=60))
            if len(futures) >= 64:
                for f in futures:
                    f.result()
                futures = []
        for f in futures:
            f.result()


def snapshot_save(endpoint: str, path: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run(["etcdctl", f"--endpoints={endpoint}", "--command-timeout=600s",
                    "snapshot", "save", str(path)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--txn-ops", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="snapshot-bbolt-"))
    rows = {}
    try:
        for name, server in (("etcd", EtcdProcess(tmp / "etcd", extra_args=[
                                  "--quota-backend-bytes", str(8 << 30)])),
                             ("kvstore", KvstoreProcess(tmp / "kv"))):
            with server:
                t0 = time.perf_counter()
                load(server.endpoint, args.keys, args.value_size, args.txn_ops)
                print(f"{name}: loaded {args.keys:,} keys in {time.perf_counter() - t0:.1f} s",
                      flush=True)
                out = tmp / f"{name}.db"
                times = [snapshot_save(server.endpoint, out) for _ in range(args.runs)]
                rows[name] = (min(times), out.stat().st_size)
                print(f"{name}: snapshot save runs {', '.join(f'{t:.2f}' for t in times)} s",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("server | best s | file MB | MB/s | keys/s")
    print("---|---|---|---|---")
    for name, (t, size) in rows.items():
        print(f"{name} | {t:.2f} | {size / 1e6:.1f} | {size / 1e6 / t:.1f} | {args.keys / t:,.0f}")
    (te, se), (tk, sk) = rows["etcd"], rows["kvstore"]
    print(f"\nkvstore ×etcd: MB/s {(sk / tk) / (se / te):.2f}, keys/s {te / tk:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
