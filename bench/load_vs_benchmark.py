#!/usr/bin/env python3
"""`kvstore load` against etcd's own load generator (tools/benchmark), on the same server.

Starts one server (a real etcd by default; `--server kvstore` for kvstore), pinned to CPU 0
with --pin, on a fresh data dir on --medium (tmpfs: /dev/shm, disk: /tmp). For each workload
(put, range) it runs etcd's `benchmark` and then `kvstore load` with the same shape (clients,
connections, total, key and value sizes), each pinned to CPU 1 with --pin, one after the other.
For each run: requests/s as the tool reports it, the tool's CPU-seconds, requests per client
CPU-second, and the server's CPU-seconds. benchmark's CPU is its process's utime+stime
(getrusage(RUSAGE_CHILDREN) around the run); kvstore load's is what it reports in its results
(every worker process's process_time over the run, and the coordinator's): its workers are
children of multiprocessing's forkserver, whose times never reach our RUSAGE_CHILDREN. Then the ratio
kvstore load / benchmark of requests per client CPU-second: the issue's goal is >= 1.5.

--procs-run adds a `kvstore load --procs 2` run per workload, unpinned, and reports the
server's CPU use during it (cores busy): whether two generator processes saturate the server.

    python bench/load_vs_benchmark.py --pin --medium tmpfs
    python bench/load_vs_benchmark.py --server kvstore --pin --procs-run
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from etcd_side_by_side import (
    RANGE_KEY,
    Bench,
    EtcdServer,
    KvstoreServer,
    Server,
    child_env,
    get_benchmark_binary,
    log,
    run_benchmark,
)

REPO = Path(__file__).resolve().parent.parent
GOAL = 1.5  # kvstore load's requests per client CPU-second over benchmark's
WORKLOADS = ("put", "range")


def load_command(args, server: Server, workload: str, procs: int, out: Path, pin: bool) -> list[str]:
    common = [f"--endpoints={server.endpoint}", f"--clients={args.clients}", f"--conns={args.conns}",
              f"--total={args.total}", f"--procs={procs}", "--quiet", f"--out={out}"]
    if workload == "put":
        shape = ["put", f"--key-size={args.key_size}", f"--val-size={args.val_size}",
                 f"--key-space-size={args.key_space_size}"]
    else:
        shape = ["range", f"--range-key={RANGE_KEY}", f"--consistency={args.consistency}"]
    cmd = [sys.executable, "-m", "kvstore", "load", *shape, *common]
    return (["taskset", "-c", "1"] + cmd) if pin else cmd


def run_load(args, server: Server, workload: str, procs: int, outdir: Path, pin: bool) -> dict:
    out = outdir / f"load-{workload}-p{procs}.json"
    cmd = load_command(args, server, workload, procs, out, pin)
    log(f"[kvstore load] {' '.join(cmd)}")
    env = child_env()
    env["PYTHONPATH"] = str(REPO)
    server0, t0 = server.cpu(), time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.monotonic() - t0
    server1 = server.cpu()
    if proc.returncode != 0 or not out.exists():
        return {"ok": False, "reason": f"exit {proc.returncode}: {proc.stderr[-800:]}"}
    result = json.loads(out.read_text())["runs"][0]
    ops = result["ops"]
    ok = sum(op["ok"] for op in ops.values())
    errors = sum(op["error_count"] for op in ops.values())
    elapsed = result["elapsed_s"]
    cpu = result["cpu_seconds"]["total"]
    return {"ok": errors == 0 and ok == args.total, "requests": ok, "errors": errors,
            "requests_per_s": ok / elapsed, "client_cpu_s": cpu, "wall_s": wall,
            "p99_ms": max(op["latency_ms"]["p99"] for op in ops.values()),
            "server_cpu_s": (server1 - server0) if server0 is not None and server1 is not None else None,
            "elapsed_s": elapsed}


def run_go(args, bench: Bench, server: Server, workload: str, outdir: Path) -> dict:
    if workload == "put":
        sub = ["put", f"--key-size={args.key_size}", f"--val-size={args.val_size}",
               f"--total={args.total}", "--sequential-keys=false",
               f"--key-space-size={args.key_space_size}"]
    else:
        sub = ["range", RANGE_KEY, f"--total={args.total}", f"--consistency={args.consistency}"]
    server0 = server.cpu()
    _, res, _ = bench.run(server, args.clients, args.conns, sub, args.timeout, workload)
    server1 = server.cpu()
    errors = sum(res.errors.values())
    return {"ok": res.ok and not errors, "reason": res.reason, "requests": args.total - errors,
            "errors": errors, "requests_per_s": res.stats.get("requests_per_s"),
            "client_cpu_s": res.client_cpu_s, "wall_s": res.elapsed_s,
            "p99_ms": (res.stats.get("p99_s") or 0) * 1000 or None,
            "server_cpu_s": (server1 - server0) if server0 is not None and server1 is not None else None}


def seed_range_key(bench: Bench, server: Server, outdir: Path) -> None:
    # benchmark's one-byte keys, 'r' among them (see etcd_side_by_side.RANGE_KEY)
    cmd = bench.command(server, 1, 1, ["put", "--key-size=1", "--sequential-keys",
                                       "--key-space-size=64", "--total=64"])
    res = run_benchmark(cmd, 60, outdir, "seed-range")
    if not res.ok:
        sys.exit(f"error: seeding the range key failed: {res.reason}")


def per_cpu(r: dict) -> float | None:
    if not r.get("requests_per_s") or not r.get("client_cpu_s"):
        return None
    return r["requests"] / r["client_cpu_s"]


def fmt(x, spec: str = ",.0f") -> str:
    return "–" if x is None else format(x, spec)


def report(server_name: str, args, rows: list[dict], procs_rows: list[dict]) -> str:
    lines = [f"server: {server_name} ({args.medium}), {args.clients} clients, {args.conns} conns, "
             f"{args.total} requests, pinned: {args.pin}", "",
             "| workload | tool | req/s | p99 ms | client CPU-s | req / client CPU-s | server CPU-s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        for tool in ("benchmark", "kvstore load"):
            r = row[tool]
            lines.append(f"| {row['workload']} | {tool} | {fmt(r.get('requests_per_s'))} | "
                         f"{fmt(r.get('p99_ms'), '.1f')} | {fmt(r.get('client_cpu_s'), '.2f')} | "
                         f"{fmt(per_cpu(r))} | {fmt(r.get('server_cpu_s'), '.2f')} |"
                         + ("" if r.get("ok") else f" FAILED: {r.get('reason', '')[:120]}"))
    lines += ["", "| workload | req / client CPU-s, kvstore load ÷ benchmark | goal ≥ 1.5 |",
              "|---|---:|---|"]
    for row in rows:
        a, b = per_cpu(row["kvstore load"]), per_cpu(row["benchmark"])
        ratio = a / b if a and b else None
        lines.append(f"| {row['workload']} | {fmt(ratio, '.2f')} | "
                     f"{'met' if ratio and ratio >= GOAL else 'NOT met'} |")
    if procs_rows:
        lines += ["", "| workload | kvstore load --procs 2: req/s | server cores busy |", "|---|---:|---:|"]
        for row in procs_rows:
            r = row["result"]
            busy = (r["server_cpu_s"] / r["elapsed_s"]
                    if r.get("server_cpu_s") and r.get("elapsed_s") else None)
            lines.append(f"| {row['workload']} | {fmt(r.get('requests_per_s'))} | {fmt(busy, '.2f')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=("etcd", "kvstore"), default="etcd")
    p.add_argument("--medium", choices=("tmpfs", "disk"), default="tmpfs")
    p.add_argument("--pin", action="store_true", help="server on CPU 0, the load tool on CPU 1")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--total", type=int, default=100_000)
    p.add_argument("--key-size", type=int, default=8)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--key-space-size", type=int, default=100_000)
    p.add_argument("--consistency", choices=("l", "s"), default="l")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--procs-run", action="store_true", help="also kvstore load --procs 2, unpinned")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--benchmark-bin", default=None)
    p.add_argument("--build-timeout", type=float, default=1800)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    binary = get_benchmark_binary(args)
    base = Path("/dev/shm" if args.medium == "tmpfs" else "/tmp")
    with tempfile.TemporaryDirectory(prefix="load-vs-benchmark-", dir=base) as tmp:
        workdir = Path(tmp)
        outdir = workdir / "out"
        outdir.mkdir()
        server: Server
        if args.server == "etcd":
            server = EtcdServer(workdir, args.pin, "etcd", 8 * 1024**3)
        else:
            server = KvstoreServer(workdir, args.pin, [])
        bench = Bench(args, binary, outdir)
        server.start()
        try:
            if (why := bench.wait_ready(server, 60)) is not None:
                sys.exit(f"error: {server.name} not ready: {why}")
            rows, procs_rows = [], []
            for workload in args.workloads.split(","):
                if workload == "range":
                    seed_range_key(bench, server, outdir)
                go = run_go(args, bench, server, workload, outdir)
                ours = run_load(args, server, workload, 1, outdir, args.pin)
                rows.append({"workload": workload, "benchmark": go, "kvstore load": ours})
                if args.procs_run:
                    procs_rows.append({"workload": workload,
                                       "result": run_load(args, server, workload, 2, outdir, False)})
        finally:
            server.stop()
    text = report(server.name, args, rows, procs_rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows,
                                         "procs_rows": procs_rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
