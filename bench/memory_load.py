#!/usr/bin/env python3
"""Server memory with a large keyspace, kvstore next to a real etcd in the same run.

Starts each server fresh (its own temporary data dir, default flags, LMDB log for kvstore),
loads --keys distinct keys of --value-size bytes with etcd's own benchmark tool
(`put --sequential-keys`, so every put makes a new key), waits --settle seconds (a snapshot
may be running), and reads the server's resident memory from /proc: VmRSS now and VmHWM (the
peak during the load). Reports each server's numbers and kvstore's ratio to etcd's.

    python3 bench/memory_load.py [--keys 1000000] [--value-size 256] [--pin]

Issue 5's goal: with 1M keys x 256 B loaded, kvstore's RSS below etcd's.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from etcd_side_by_side import Bench, EtcdServer, KvstoreServer, get_benchmark_binary, log, run_benchmark  # noqa: E402


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0]) * 1024
    return out


def measure(server, bench: Bench, args, outdir: Path) -> dict:
    server.start()
    try:
        why = bench.wait_ready(server, 60)
        if why:
            return {"error": why}
        before = proc_memory(server.proc.pid)["VmRSS"]
        sub = ["put", f"--key-size={args.key_size}", f"--val-size={args.value_size}",
               f"--total={args.keys}", "--sequential-keys", f"--key-space-size={args.keys}"]
        cmd = bench.command(server, args.clients, args.conns, sub)
        log(f"[{server.name}] loading {args.keys} keys")
        t0 = time.monotonic()
        res = run_benchmark(cmd, args.timeout, outdir, f"load-{server.name}",
                            abort=server.died_reason)
        load_s = time.monotonic() - t0
        if not res.ok or res.errors:
            return {"error": res.reason or f"errors: {res.errors}"}
        time.sleep(args.settle)
        mem = proc_memory(server.proc.pid)
        return {"rss_mib": round(mem["VmRSS"] / 2**20, 1), "peak_mib": round(mem["VmHWM"] / 2**20, 1),
                "empty_rss_mib": round(before / 2**20, 1), "load_s": round(load_s, 1),
                "bytes_per_key": round((mem["VmRSS"] - before) / args.keys)}
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--key-size", type=int, default=16)
    p.add_argument("--clients", type=int, default=256)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--settle", type=float, default=5.0, help="seconds between load and reading")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--pin", action="store_true", help="servers on CPU 0, the tool on CPU 1")
    p.add_argument("--servers", default="etcd,kvstore")
    p.add_argument("--etcd-bin", default="/usr/bin/etcd")
    p.add_argument("--benchmark-bin", default=None)
    p.add_argument("--build-timeout", type=float, default=1800)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    binary = get_benchmark_binary(args)
    results = {}
    with tempfile.TemporaryDirectory(prefix="kvstore-memory-") as tmp:
        workdir = Path(tmp)
        bench = Bench(argparse.Namespace(pin=args.pin), binary, workdir)
        for name in args.servers.split(","):
            if name == "etcd":
                server = EtcdServer(workdir, args.pin, args.etcd_bin, 8 * 1024**3)
            else:
                server = KvstoreServer(workdir, args.pin, [])
            results[name] = measure(server, bench, args, workdir)
            log(f"[{name}] {results[name]}")

    print(f"\n{args.keys:,} keys x {args.value_size} B values ({args.key_size} B keys), "
          f"loaded by etcd's benchmark with {args.clients} clients\n")
    print("| server | RSS after load (MiB) | peak RSS (MiB) | RSS growth per key (B) | load time (s) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | failed: {r['error']} | | | |")
        else:
            print(f"| {name} | {r['rss_mib']} | {r['peak_mib']} | {r['bytes_per_key']} | {r['load_s']} |")
    e, k = results.get("etcd", {}), results.get("kvstore", {})
    if "rss_mib" in e and "rss_mib" in k:
        ratio = k["rss_mib"] / e["rss_mib"]
        print(f"\nkvstore / etcd RSS: {ratio:.2f}x (goal: below 1.00x: "
              f"{'met' if ratio < 1 else 'missed'}); peak {k['peak_mib'] / e['peak_mib']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
