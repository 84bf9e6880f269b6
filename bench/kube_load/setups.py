"""The four setups, (a)-(d): their server processes, ports, readiness and CPU."""
from __future__ import annotations

import http.client
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

from etcd_side_by_side import EtcdServer, KvstoreServer, Server, free_port, proc_tree_cpu, tcp_open
from kvstore.partition.kube import METRICS_PORT_OFFSET, kube_map

from .procfs import child_pids, own_cpu, worker_name
from .servers import NamedEtcd, Proc, kvstore_env, profile_flag_available

SETUPS = {
    "a": ("kvstore", "kvstore, one process (LMDB log)"),
    "b": ("kvstore-kube", "kvstore kube profile, 5 partitions, one process each"),
    "c": ("etcd", "etcd, one process"),
    "d": ("etcd-kube", "5 etcds split by the kube map"),
}
PORT_BLOCK = 7  # the kube map's ports: P (default), P+2 (supervisor /health), P+3..P+6


def free_port_block(n: int = PORT_BLOCK) -> int:
    """P such that P..P+n-1 are free on 127.0.0.1, below the ephemeral range (so no client
    socket takes one meanwhile)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


class Setup:
    def __init__(self, key: str, workdir: Path, args):
        self.key = key
        self.name, self.label = SETUPS[key]
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True)
        self.partitioned = key in ("b", "d")
        self.port = free_port_block() if self.partitioned else free_port()
        self.servers: list[Server] = []
        self.health_port: int | None = None  # the supervisor's /health
        self.how = ""
        if key == "a":
            srv = KvstoreServer(self.workdir, False, [])
            srv.port = self.port
            self.servers = [srv]
            self.how = "kvstore serve --log-backend lmdb"
        elif key == "c":
            srv = EtcdServer(self.workdir, False, args.etcd_bin, args.quota_backend_bytes)
            srv.port = self.port
            self.servers = [srv]
            self.how = "etcd"
        elif key == "d":
            self.servers = [NamedEtcd(f"etcd-{p.name}", self.workdir, int(p.url.rsplit(":", 1)[1]),
                                      args.etcd_bin, args.quota_backend_bytes)
                            for p in kube_map("127.0.0.1", self.port)]
            self.how = "5 x etcd, ports of kube_map"
        else:
            mode = args.kube_workers
            if mode == "auto":
                mode = "supervisor" if profile_flag_available() else "processes"
            url = f"http://127.0.0.1:{self.port}"
            if mode == "supervisor":
                self.servers = [Proc("supervisor", self.workdir, self.port, [
                    sys.executable, "-m", "kvstore", "serve", "--profile", "kube",
                    "--data-dir", str(self.workdir / "data"), "--listen-client-urls", url],
                    kvstore_env())]
                self.health_port = self.port + METRICS_PORT_OFFSET
                self.how = "kvstore serve --profile kube (supervisor + 5 workers)"
            else:
                self.servers = [Proc(p.name, self.workdir, int(p.url.rsplit(":", 1)[1]), [
                    sys.executable, "-m", "kvstore", "serve", "--name", p.name,
                    "--data-dir", str(self.workdir / "data" / p.name),
                    "--listen-client-urls", p.url], kvstore_env())
                    for p in kube_map("127.0.0.1", self.port)]
                self.how = ("5 x kvstore serve started by this script" +
                            (" (no --profile in the CLI yet)" if args.kube_workers == "auto" else ""))

    def ports(self) -> list[int]:
        if self.partitioned:
            return [int(p.url.rsplit(":", 1)[1]) for p in kube_map("127.0.0.1", self.port)]
        return [self.port]

    def start(self) -> None:
        for s in self.servers:
            s.start()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.died():
                raise RuntimeError(self.died())
            if all(tcp_open(p) for p in self.ports()) and self._healthy():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        if self.health_port is None:
            return True
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=2)
            c.request("GET", "/health")
            return c.getresponse().status == 200
        except OSError:
            return False

    def cpu(self) -> float:
        return sum(s.cpu() or 0.0 for s in self.servers)

    def cpu_by_process(self) -> dict[str, float]:
        """CPU-seconds of each server process (its threads; a supervisor's workers apart,
        named by their --name), for the partitioned setups."""
        out: dict[str, float] = {}
        for s in self.servers:
            if s.proc is None:
                continue
            if s.name != "supervisor":
                out[s.name] = s.cpu() or 0.0
                continue
            out["supervisor"] = own_cpu(s.proc.pid)
            for pid in child_pids(s.proc.pid):
                out[worker_name(pid)] = proc_tree_cpu(pid) or 0.0
        return out

    def died(self) -> str | None:
        for s in self.servers:
            if s.died_reason():
                return f"{s.died_reason()} (log: {s.log_path})"
        return None

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


def medium_of(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True).stdout
    fstype = out.split()[-1] if out.split() else "?"
    return "tmpfs" if fstype == "tmpfs" else f"disk ({fstype})"
