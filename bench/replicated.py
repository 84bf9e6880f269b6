#!/usr/bin/env python3
"""Replicated kvstore against a replicated etcd, with etcd's own load generator, in one run.

Three setups, each started fresh on loopback, driven by etcd v3.4's `tools/benchmark` (built by
../shared/tools/build-etcd-benchmark.sh) with `put` and `txn-put` at 64 and 256 clients:

  (a) lmdb1  one kvstore member on its LMDB log (the embedded default)
  (b) js3    three kvstore members on one NATS JetStream stream, R3 on three nats-servers
             (sync_interval always), the clients spread over the members (--endpoints a,b,c)
  (c) etcd3  a real three-member etcd cluster (Debian's etcd), clients spread the same way

Reports requests/s, p99 latency, and the CPU-seconds of every server process of the setup
(NATS and kvstore for js3; the three etcds for etcd3), with (b)'s ratios: its requests/s to
(a)'s, and its requests per server CPU-second to (c)'s. Every setup's data dirs are in
--workdir: one medium for all (it prints which).

    python3 bench/replicated.py [--total 20000] [--clients 64,256] [--workloads put,txn-put,range]

``range`` (not run by default) is linearizable Ranges of one key: each one needs a read index
(etcd: ReadIndex, a heartbeat round; kvstore on JetStream: a barrier appended to the stream).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from etcd_side_by_side import (  # noqa: E402
    REPO,
    child_env,
    free_port,
    get_benchmark_binary,
    git_state,
    kill_group,
    log,
    proc_tree_cpu,
    run_benchmark,
)
from nats_cluster import NatsCluster  # noqa: E402

SETUPS = ("lmdb1", "js3", "etcd3")
WORKLOADS = ("put", "txn-put")
ALL_WORKLOADS = (*WORKLOADS, "range")  # range: linearizable reads of one key (a read index each)


class Process:
    """A server process in its own session, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], workdir: Path, env: dict | None = None):
        self.name = name
        self.cmd = cmd
        self.log_path = workdir / f"{name}.log"
        self.env = env or child_env()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, cwd=str(REPO),
                                         start_new_session=True)

    def cpu(self) -> float:
        return proc_tree_cpu(self.proc.pid) or 0.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait(10)


def kvstore_env() -> dict:
    env = child_env()
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def kvstore_build() -> str:
    """Which MVCC core the servers will run: a benchmark of the pure twins by accident is
    refused."""
    out = subprocess.run([sys.executable, "-c", "import kvstore.mvcc as m; print(m.COMPILED)"],
                         capture_output=True, text=True, env=kvstore_env(), timeout=60).stdout
    if out.strip() != "True":
        sys.exit("error: kvstore's compiled hot paths are not built (pip install -e .); "
                 "refusing to measure the pure-Python twins")
    return "compiled"


def kvstore_member(name: str, workdir: Path, log_args: list[str]) -> tuple[Process, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "kvstore", "serve", "--name", name,
           "--data-dir", str(workdir / f"{name}-data"), "--listen-client-urls", url,
           "--advertise-client-urls", url, "--log-level", "warn", *log_args]
    return Process(name, cmd, workdir, kvstore_env()), f"127.0.0.1:{port}"


class Setup:
    def __init__(self, name: str, workdir: Path, gomaxprocs: int | None = None):
        self.name = name
        self.gomaxprocs = gomaxprocs  # for the Go servers (NATS, etcd) alike
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True)
        self.procs: list[Process] = []
        self.endpoints: list[str] = []
        self.nats: NatsCluster | None = None

    def start(self) -> None:
        if self.name == "lmdb1":
            p, e = kvstore_member("kv1", self.workdir, ["--log-backend", "lmdb"])
            self.procs, self.endpoints = [p], [e]
        elif self.name == "js3":
            saved = os.environ.get("GOMAXPROCS")
            if self.gomaxprocs:  # NatsServer takes this process's environment
                os.environ["GOMAXPROCS"] = str(self.gomaxprocs)
            try:
                self.nats = NatsCluster(self.workdir / "nats", size=3).start()
            finally:
                os.environ.pop("GOMAXPROCS", None)
                if saved is not None:
                    os.environ["GOMAXPROCS"] = saved
            for i in range(3):  # each member prefers "its own" NATS server, as co-located
                urls = self.nats.urls[i:] + self.nats.urls[:i]
                p, e = kvstore_member(f"kv{i + 1}", self.workdir, [
                    "--log-backend", "jetstream", "--nats-url", ",".join(urls),
                    "--cluster-name", "bench", "--nats-replicas", "3"])
                self.procs.append(p)
                self.endpoints.append(e)
        else:
            etcd = shutil.which("etcd") or "/usr/bin/etcd"
            peers = [free_port() for _ in range(3)]
            clients = [free_port() for _ in range(3)]
            cluster = ",".join(f"e{i + 1}=http://127.0.0.1:{peers[i]}" for i in range(3))
            env = {k: v for k, v in child_env().items() if not k.startswith("ETCD")}
            if self.gomaxprocs:
                env["GOMAXPROCS"] = str(self.gomaxprocs)
            for i in range(3):
                url, peer = f"http://127.0.0.1:{clients[i]}", f"http://127.0.0.1:{peers[i]}"
                self.procs.append(Process(f"e{i + 1}", [
                    etcd, "--name", f"e{i + 1}", "--data-dir", str(self.workdir / f"e{i + 1}-data"),
                    "--listen-client-urls", url, "--advertise-client-urls", url,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--log-level", "error", "--quota-backend-bytes", str(8 << 30)],
                    self.workdir, env))
                self.endpoints.append(f"127.0.0.1:{clients[i]}")
        for p in self.procs:
            p.start()

    def all_processes_cpu(self) -> float:
        total = sum(p.cpu() for p in self.procs)
        if self.nats is not None:
            total += sum(proc_tree_cpu(s.proc.pid) or 0.0 for s in self.nats.servers)
        return total

    def died(self) -> str | None:
        for p in self.procs:
            if not p.alive():
                return f"{p.name} exited ({p.proc.returncode if p.proc else '?'})"
        return None

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        if self.nats is not None:
            self.nats.stop()


def benchmark_cmd(binary: str, endpoints: list[str], clients: int, conns: int,
                  sub: list[str]) -> list[str]:
    return [binary, f"--endpoints={','.join(endpoints)}", f"--conns={conns}",
            f"--clients={clients}", "--precise", *sub]


def workload_args(workload: str, total: int) -> list[str]:
    common = [f"--total={total}", "--key-size=8", "--val-size=256", "--key-space-size=100000"]
    if workload == "put":
        return ["put", *common, "--sequential-keys=false"]
    if workload == "range":
        return ["range", "range-key", f"--total={total}", "--consistency=l"]
    return ["txn-put", *common]


def wait_ready(binary: str, setup: Setup, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        res = run_benchmark(benchmark_cmd(binary, setup.endpoints, 1, 1,
                                          ["put", "--total=3", "--key-size=8"]),
                            20, setup.workdir, "probe", abort=setup.died)
        if res.ok and not res.errors:
            return
        if time.monotonic() > deadline or setup.died():
            raise RuntimeError(f"{setup.name} not ready: {res.reason or res.errors} "
                               f"{setup.died() or ''}")
        time.sleep(1)


def medium(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True).stdout
    fstype = out.split()[-1] if out.split() else "?"
    return "tmpfs" if fstype == "tmpfs" else f"disk ({fstype})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"of {','.join(ALL_WORKLOADS)}")
    ap.add_argument("--clients", default="64,256")
    ap.add_argument("--total", type=int, default=20000, help="requests per run")
    ap.add_argument("--workdir", default=None, help="where the data dirs go (default: a temp dir)")
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--gomaxprocs", type=int, default=None,
                    help="GOMAXPROCS of the Go servers, NATS and etcd alike (default: Go's)")
    ap.add_argument("--benchmark-bin", default=None)
    ap.add_argument("--build-timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    binary = get_benchmark_binary(args)
    build = kvstore_build()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kvstore-replicated-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.setups.split(","):
        setup = Setup(name, workdir, args.gomaxprocs)
        log(f"[{name}] starting")
        try:
            setup.start()
            wait_ready(binary, setup)
            for workload in args.workloads.split(","):
                for clients in map(int, args.clients.split(",")):
                    conns = max(1, clients // 8)
                    cmd = benchmark_cmd(binary, setup.endpoints, clients, conns,
                                        workload_args(workload, args.total))
                    cpu0 = setup.all_processes_cpu()
                    res = run_benchmark(cmd, 600, setup.workdir, f"{workload}-{clients}",
                                        abort=setup.died)
                    cpu = setup.all_processes_cpu() - cpu0
                    row = {"setup": name, "workload": workload, "clients": clients,
                           "ok": res.ok and not res.errors, "reason": res.reason,
                           "errors": res.errors, "requests_per_s": res.stats.get("requests_per_s"),
                           "p99_s": res.stats.get("p99_s"), "count": res.stats.get("count"),
                           "server_cpu_s": round(cpu, 2)}
                    if row["count"]:
                        row["requests_per_cpu_s"] = row["count"] / cpu if cpu > 0 else None
                    log(f"[{name}] {workload} x{clients}: {json.dumps(row)}")
                    results.append(row)
        finally:
            setup.stop()
    print(report(results, build, medium(workdir), git_state(), args.gomaxprocs))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


def report(results: list[dict], build: str, media: str, git: dict, gomaxprocs: int | None) -> str:
    by = {(r["setup"], r["workload"], r["clients"]): r for r in results}
    lines = [f"kvstore {git['head']}{' +changes' if git['changed'] else ''}, {build} build; "
             f"every setup's data on {media}; {os.cpu_count()} CPUs shared by servers and client; "
             f"GOMAXPROCS of NATS and etcd: {gomaxprocs or 'Go default'}",
             "", "| workload | clients | setup | req/s | p99 | server CPU-s | req/CPU-s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        p99 = f"{r['p99_s'] * 1000:.1f} ms" if r.get("p99_s") else "–"
        rps = f"{r['requests_per_s']:,.0f}" if r.get("requests_per_s") else "–"
        per = f"{r['requests_per_cpu_s']:,.0f}" if r.get("requests_per_cpu_s") else "–"
        bad = "" if r["ok"] else f" (failed: {r['reason'] or r['errors']})"
        lines.append(f"| {r['workload']} | {r['clients']} | {r['setup']}{bad} | {rps} | {p99} | "
                     f"{r['server_cpu_s']} | {per} |")
    lines += ["", "| workload | clients | (b) js3 / (a) lmdb1, req/s (goal >= 0.5) | "
              "(b) js3 / (c) etcd3, req per server CPU-s (goal >= 1.0) |", "|---|---|---|---|"]
    for (setup, workload, clients), r in by.items():
        if setup != "js3":
            continue
        a, c = by.get(("lmdb1", workload, clients)), by.get(("etcd3", workload, clients))
        ra = (r["requests_per_s"] / a["requests_per_s"]
              if a and a.get("requests_per_s") and r.get("requests_per_s") else None)
        rc = (r["requests_per_cpu_s"] / c["requests_per_cpu_s"]
              if c and c.get("requests_per_cpu_s") and r.get("requests_per_cpu_s") else None)
        lines.append(f"| {workload} | {clients} | {f'{ra:.2f}x' if ra else '–'} | "
                     f"{f'{rc:.2f}x' if rc else '–'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
