#!/usr/bin/env python3
"""Wrong passwords under a put load: what a storm of failed logins costs everyone else.

Starts Debian's etcd and kvstore side by side (fresh data dirs under --data-root, the same
medium for both), each with auth enabled (root, --bcrypt-cost as given, etcd's default 10) and
drives each in turn with etcd's benchmark tool (`put`, as root, --clients clients) twice:
alone, then while an attacker sends --attempts-per-second Authenticate requests with a wrong
password (paced, each on a thread of its own so slow answers do not slow the pace). It prints
the put load's requests/s and p99 in both runs, and what the attempts got (answers by code).

    python bench/auth_attack.py [--total 20000] [--clients 16] [--attempts-per-second 100]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import etcd_side_by_side as sbs  # noqa: E402

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc  # noqa: E402

ROOT_PASSWORD = "rootpw"


def wait_serving(endpoint: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with grpc.insecure_channel(endpoint) as ch:
                rpc_pb2_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=1)
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def enable_auth(endpoint: str) -> None:
    with grpc.insecure_channel(endpoint) as ch:
        auth = rpc_pb2_grpc.AuthStub(ch)
        auth.UserAdd(pb.AuthUserAddRequest(name="root", password=ROOT_PASSWORD), timeout=30)
        auth.RoleAdd(pb.AuthRoleAddRequest(name="root"), timeout=10)
        auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
        auth.AuthEnable(pb.AuthEnableRequest(), timeout=10)


class Attacker:
    """Authenticate(root, wrong password) at a steady pace until stopped."""

    def __init__(self, endpoint: str, per_second: float):
        self.endpoint = endpoint
        self.interval = 1.0 / per_second
        self.answers: Counter = Counter()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _attempt(self, stub) -> None:
        try:
            stub.Authenticate(pb.AuthenticateRequest(name="root", password="wrong"), timeout=30)
            self.answers["OK"] += 1
        except grpc.RpcError as e:
            self.answers[e.code().name] += 1

    def _run(self) -> None:
        with grpc.insecure_channel(self.endpoint) as ch, ThreadPoolExecutor(256) as pool:
            stub = rpc_pb2_grpc.AuthStub(ch)
            next_at = time.monotonic()
            while not self._stop.is_set():
                pool.submit(self._attempt, stub)
                self.sent += 1
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def __enter__(self):
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.elapsed = time.monotonic() - self.started
        self._thread.join()


def put_load(binary: str, server, args, outdir: Path, tag: str) -> dict:
    cmd = [binary, f"--endpoints={server.endpoint}", f"--clients={args.clients}",
           f"--conns={max(1, args.clients // 4)}", f"--user=root:{ROOT_PASSWORD}", "--precise",
           "put", "--key-size=8", "--val-size=256", f"--total={args.total}",
           "--sequential-keys=false", "--key-space-size=100000"]
    cpu0 = server.cpu()
    res = sbs.run_benchmark(cmd, 600, outdir, tag)
    cpu1 = server.cpu()
    if not res.ok:
        raise SystemExit(f"{tag}: {res.reason}\n{res.stderr_tail}")
    return {"req_s": res.stats["requests_per_s"], "p99_ms": res.stats["p99_s"] * 1000,
            "cpu_s": round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None,
            "errors": res.errors}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--attempts-per-second", type=float, default=100.0)
    ap.add_argument("--bcrypt-cost", type=int, default=10)
    ap.add_argument("--servers", default="etcd,kvstore")
    ap.add_argument("--data-root", default="/tmp", help="where the data dirs go (one medium)")
    ap.add_argument("--benchmark-bin", default=None)
    ap.add_argument("--etcd-bin", default="etcd")
    ap.add_argument("--build-timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    binary = sbs.get_benchmark_binary(args)
    workdir = Path(tempfile.mkdtemp(prefix="auth-attack-", dir=args.data_root))
    outdir = workdir / "out"
    outdir.mkdir()
    cost = ["--bcrypt-cost", str(args.bcrypt_cost)]
    results = {}
    for name in args.servers.split(","):
        if name == "etcd":
            server = sbs.EtcdServer(workdir, False, args.etcd_bin, 8 * 2**30)
            server.command = (lambda base: lambda: base() + cost)(server.command)  # type: ignore[method-assign]
        else:
            server = sbs.KvstoreServer(workdir, False, cost)
        server.start()
        try:
            wait_serving(server.endpoint)
            enable_auth(server.endpoint)
            quiet = put_load(binary, server, args, outdir, f"{name}-quiet")
            with Attacker(server.endpoint, args.attempts_per_second) as attack:
                attacked = put_load(binary, server, args, outdir, f"{name}-attacked")
            attacked["attempts_sent"] = attack.sent
            attacked["attempts_per_s"] = round(attack.sent / attack.elapsed, 1)
            attacked["attempt_answers"] = dict(attack.answers)
            results[name] = {"quiet": quiet, "attacked": attacked}
        finally:
            server.stop()
    print(json.dumps(results, indent=1))
    print()
    print(f"put --clients {args.clients}, {args.total} puts as root; attacker: "
          f"{args.attempts_per_second:g} wrong passwords/s; bcrypt cost {args.bcrypt_cost}; "
          f"data under {args.data_root}")
    print()
    print("| server | req/s alone | p99 alone | req/s attacked | p99 attacked | p99 × | attempts/s | attempt answers |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        q, a = r["quiet"], r["attacked"]
        print(f"| {name} | {q['req_s']:,.0f} | {q['p99_ms']:.1f} ms | {a['req_s']:,.0f} | "
              f"{a['p99_ms']:.1f} ms | {a['p99_ms'] / q['p99_ms']:.2f} | {a['attempts_per_s']} | "
              f"{a['attempt_answers']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
