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
import re
import sys
import tempfile
import threading
import time
from collections import Counter
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
    """Authenticate(root, wrong password) at a steady pace until stopped: each attempt a gRPC
    future (no thread per attempt), so slow answers do not slow the pace."""

    def __init__(self, endpoint: str, per_second: float):
        self.endpoint = endpoint
        self.interval = 1.0 / per_second
        self.answers: Counter = Counter()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()
        self.started = self.elapsed = 0.0

    def _answered(self, fut) -> None:
        try:
            fut.result()
            name = "OK"
        except grpc.RpcError as e:
            name = e.code().name
        with self._lock:
            self.answers[name] += 1

    def _run(self) -> None:
        with grpc.insecure_channel(self.endpoint) as ch:
            stub = rpc_pb2_grpc.AuthStub(ch)
            pending = []
            next_at = time.monotonic()
            while not self._stop.is_set():
                fut = stub.Authenticate.future(
                    pb.AuthenticateRequest(name="root", password="wrong"), timeout=30)
                fut.add_done_callback(self._answered)
                pending.append(fut)
                self.sent += 1
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            for fut in pending:
                fut.cancel()  # what is still unanswered counts as CANCELLED

    def start(self) -> None:
        if not self._thread.is_alive():
            self.started = time.monotonic()
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.elapsed = time.monotonic() - self.started
        self._thread.join()


def legit_login(endpoint: str) -> dict:
    """One Authenticate with the right password: how long it took, and its answer."""
    t0 = time.monotonic()
    try:
        with grpc.insecure_channel(endpoint) as ch:
            rpc_pb2_grpc.AuthStub(ch).Authenticate(
                pb.AuthenticateRequest(name="root", password=ROOT_PASSWORD), timeout=30)
        answer = "OK"
    except grpc.RpcError as e:
        answer = f"{e.code().name}: {e.details()}"
    return {"seconds": round(time.monotonic() - t0, 3), "answer": answer}


_PROGRESS = re.compile(r"(\d+) / (\d+)")


def put_load(binary: str, server, args, outdir: Path, tag: str, attacker: Attacker | None = None
             ) -> dict:
    """The put load's requests/s and p99; a run that does not finish within --timeout is
    stopped there, and reported by the puts it completed (no p99: the tool prints none). The
    attacker starts once the tool shows progress: it has logged in by then."""
    cmd = [binary, f"--endpoints={server.endpoint}", f"--clients={args.clients}",
           f"--conns={max(1, args.clients // 4)}", f"--user=root:{ROOT_PASSWORD}", "--precise",
           "put", "--key-size=8", "--val-size=256", f"--total={args.total}",
           "--sequential-keys=false", "--key-space-size=100000"]
    cpu0 = server.cpu()
    mark = f" / {args.total}"
    res = sbs.run_benchmark(cmd, args.timeout, outdir, tag, markers=(mark,) if attacker else (),
                            on_marker=lambda _: attacker.start() if attacker else None)
    cpu1 = server.cpu()
    cpu = round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None
    if res.ok:
        return {"req_s": res.stats["requests_per_s"], "p99_ms": res.stats["p99_s"] * 1000,
                "cpu_s": cpu, "errors": res.errors, "finished": True}
    if "timeout" not in (res.reason or ""):
        raise SystemExit(f"{tag}: {res.reason}\n{res.stderr_tail}")
    done = [int(m.group(1)) for m in _PROGRESS.finditer(res.text)]
    completed = max(done) if done else 0
    return {"req_s": completed / res.elapsed_s, "p99_ms": None, "cpu_s": cpu, "errors": res.errors,
            "finished": False, "completed": completed, "elapsed_s": res.elapsed_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--attempts-per-second", type=float, default=100.0)
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds a put run may take; a run stopped there reports what it did")
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
            attack = Attacker(server.endpoint, args.attempts_per_second)
            try:
                attacked = put_load(binary, server, args, outdir, f"{name}-attacked", attack)
                attack.start()  # (if the tool never showed progress)
                attacked["login_under_attack"] = legit_login(server.endpoint)
            finally:
                attack.stop()
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
    print("| server | req/s alone | p99 alone | req/s attacked | p99 attacked | p99 × | attempts/s "
          "| attempt answers | a right password meanwhile |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        q, a = r["quiet"], r["attacked"]
        if a["finished"]:
            p99, ratio = f"{a['p99_ms']:.1f} ms", f"{a['p99_ms'] / q['p99_ms']:.2f}"
        else:
            p99 = f"none: {a['completed']} of {args.total} puts in {a['elapsed_s']:.0f} s"
            ratio = "–"
        print(f"| {name} | {q['req_s']:,.0f} | {q['p99_ms']:.1f} ms | {a['req_s']:,.0f} | "
              f"{p99} | {ratio} | {a['attempts_per_s']} | {a['attempt_answers']} | "
              f"{a['login_under_attack']['answer']} in {a['login_under_attack']['seconds']} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
