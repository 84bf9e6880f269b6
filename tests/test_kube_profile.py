"""`kvstore serve --profile kube` / `--partitions FILE`: a real supervisor process, its real
worker processes, Debian's etcdctl against each partition."""
from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from etcdctl import Etcdctl
from kube_overrides import parse_etcd_servers, parse_etcd_servers_overrides
from kvstore.partition.kube import kube_map
from procs import REPO

TRANSPORT = os.environ.get("KVSTORE_TEST_TRANSPORT", "h2")


def free_port_run(count: int) -> int:
    """A port P such that P .. P+count-1 are all free on loopback, below the ephemeral range:
    above it, a client socket (an etcdctl, a health probe) may take one of them as its own
    port before the worker that should listen there starts."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(10000, ephemeral_low - count)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc: ppid links)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Supervised:
    """A supervisor process; its output in a log file."""

    def __init__(self, tmp_path: Path, args: list[str]):
        self.data_dir = tmp_path / "kube"
        self.log_path = tmp_path / "supervisor.log"
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> Supervised:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kvstore", "serve", "--data-dir", str(self.data_dir),
                 "--transport", TRANSPORT, *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, health_url: str, timeout: float = 40.0) -> dict:
        deadline = time.monotonic() + timeout
        body = b""
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                status, body = http_get(health_url)
                if status == 200:
                    return json.loads(body)
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"not healthy: {body!r}\n{self.log()[-3000:]}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill_all(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def kube_profile(tmp_path):
    port = free_port_run(7)
    sup = Supervised(tmp_path, ["--profile", "kube", "--listen-client-urls",
                                f"http://127.0.0.1:{port}"]).start()
    sup.port = port  # type: ignore[attr-defined]
    sup.map = kube_map("127.0.0.1", port)  # type: ignore[attr-defined]
    sup.health_url = f"http://127.0.0.1:{port + 2}/health"  # type: ignore[attr-defined]
    try:
        yield sup
    finally:
        sup.kill_all()


def worker_pid(sup: Supervised, partition: str) -> int:
    assert sup.proc is not None
    for pid in descendants(sup.proc.pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"--partition={partition}".encode() in cmd:
            return pid
    raise LookupError(partition)


def test_kube_profile_serves_five_partitions_to_etcdctl(kube_profile):
    sup = kube_profile
    health = sup.wait_healthy(sup.health_url)
    assert sorted(health["partitions"]) == ["default", "events", "leases", "nodes", "pods"]
    assert all(p["health"] == "true" for p in health["partitions"].values())
    assert len({worker_pid(sup, p.name) for p in sup.map}) == 5
    for part in sup.map:
        endpoint = part.url.split("://")[1]
        ctl = Etcdctl(endpoint)
        key = (part.prefixes[0].decode() if part.prefixes else "/registry/namespaces/") + "k"
        assert ctl.run("put", key, f"v-{part.name}").stdout.strip() == "OK"
        assert ctl.run("get", key, "--print-value-only").stdout.strip() == f"v-{part.name}"
        # One write so far on each: each partition has its own revision counter.
        status = json.loads(ctl.run("endpoint", "status", "-w", "json").stdout)
        assert status[0]["Status"]["header"]["revision"] == 2
        code, metrics = http_get(f"{part.url}/metrics") if TRANSPORT == "h2" else (200, b"")
        if TRANSPORT == "h2":
            assert code == 200
            revision = f'etcd_debugging_mvcc_current_revision{{partition="{part.name}"}} 2.0\n'
            assert revision.encode() in metrics
    # The pods partition holds only its own key.
    pods = Etcdctl(sup.map["pods"].url.split("://")[1])
    assert pods.run("get", "", "--prefix", "--keys-only").stdout.split() == ["/registry/pods/k"]

    # The flags printed and written out are what kube-apiserver parses into this map.
    flags = (sup.data_dir / "kube-apiserver.flags").read_text().split()
    assert flags[0] in sup.log()
    values = dict(f.split("=", 1) for f in flags)
    assert parse_etcd_servers(values["--etcd-servers"]) == [sup.map.default.url]
    overrides = parse_etcd_servers_overrides(values["--etcd-servers-overrides"])
    assert overrides == {("", "nodes"): [sup.map["nodes"].url], ("", "pods"): [sup.map["pods"].url],
                         ("coordination.k8s.io", "leases"): [sup.map["leases"].url],
                         ("", "events"): [sup.map["events"].url]}

    code, body = http_get(sup.health_url.replace("/health", "/metrics"))
    assert code == 200 and b'kvstore_partition_up{partition="pods"} 1.0\n' in body


def test_killed_worker_comes_back_with_its_acknowledged_data(kube_profile):
    sup = kube_profile
    sup.wait_healthy(sup.health_url)
    endpoint = sup.map["pods"].url.split("://")[1]
    ctl = Etcdctl(endpoint)
    for i in range(30):
        assert ctl.run("put", f"/registry/pods/default/p{i:02d}", f"spec-{i}").returncode == 0
    victim = worker_pid(sup, "pods")
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if worker_pid(sup, "pods") != victim:
                break
        except LookupError:
            pass
        time.sleep(0.05)
    sup.wait_healthy(sup.health_url)
    got = ctl.run("get", "/registry/pods/", "--prefix", "-w", "json").json()
    assert [base64.b64decode(kv["value"]) for kv in got["kvs"]] == [
        f"spec-{i}".encode() for i in range(30)]
    assert got["header"]["revision"] == 31
    assert "partition pods was killed by SIGKILL" in sup.log()
    code, body = http_get(sup.health_url.replace("/health", "/metrics"))
    assert b'kvstore_partition_restarts_total{partition="pods"} 1.0\n' in body
    assert b'kvstore_partition_restarts_total{partition="nodes"} 0.0\n' in body


def test_sigterm_leaves_no_process_behind(kube_profile):
    sup = kube_profile
    sup.wait_healthy(sup.health_url)
    workers = descendants(sup.proc.pid)
    assert len(workers) >= 5
    assert sup.stop() == 0
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in workers if alive(p)]
    for part in sup.map:  # and nothing listens on their ports any more
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(part.url.rsplit(":", 1)[1]))) != 0


def test_workers_stop_when_the_supervisor_is_killed(kube_profile):
    sup = kube_profile
    sup.wait_healthy(sup.health_url)
    workers = descendants(sup.proc.pid)
    sup.proc.kill()
    sup.proc.wait(10)
    deadline = time.monotonic() + 15
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in workers if alive(p)]


def test_a_worker_that_cannot_start_is_retried_with_backoff_and_the_reason_logged(tmp_path):
    port = free_port_run(7)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port + 6))  # the events partition's port
    blocker.listen(1)
    sup = Supervised(tmp_path, ["--profile", "kube", "--listen-client-urls",
                                f"http://127.0.0.1:{port}"]).start()
    health_url = f"http://127.0.0.1:{port + 2}/health"
    try:
        deadline = time.monotonic() + 40
        while "partition events exited with status 1" not in sup.log():
            assert time.monotonic() < deadline, sup.log()
            time.sleep(0.1)
        assert "address already in use" in sup.log().split("partition events exited", 1)[1]
        # Until its port is free, events stays down while the others come up.
        while True:
            code, body = http_get(health_url)
            health = json.loads(body)
            sick = {name for name, p in health["partitions"].items() if p["health"] != "true"}
            if sick == {"events"} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert code == 503
        assert sick == {"events"}, health
        assert health["reason"] == "unhealthy partitions: events"
        blocker.close()
        sup.wait_healthy(health_url)
        assert "restarting in 0.5 s" in sup.log()
        assert sup.stop() == 0
    finally:
        blocker.close()
        sup.kill_all()


def test_partitions_file(tmp_path):
    port = free_port_run(3)
    conf = tmp_path / "parts.toml"
    conf.write_text(f"""
[[partition]]
name = "main"
url = "http://127.0.0.1:{port}"

[[partition]]
name = "jobs"
prefixes = ["/registry/jobs/", "/registry/cronjobs/"]
resources = ["batch/jobs", "batch/cronjobs"]
url = "http://127.0.0.1:{port + 1}"
""")
    sup = Supervised(tmp_path, ["--partitions", str(conf), "--listen-metrics-urls",
                                f"http://127.0.0.1:{port + 2}"]).start()
    try:
        health = sup.wait_healthy(f"http://127.0.0.1:{port + 2}/health")
        assert sorted(health["partitions"]) == ["jobs", "main"]
        assert Etcdctl(f"127.0.0.1:{port + 1}").run("put", "/registry/jobs/a", "1").returncode == 0
        flags = dict(f.split("=", 1) for f in (sup.data_dir / "kube-apiserver.flags").read_text().split())
        assert parse_etcd_servers_overrides(flags["--etcd-servers-overrides"]) == {
            ("batch", "jobs"): [f"http://127.0.0.1:{port + 1}"],
            ("batch", "cronjobs"): [f"http://127.0.0.1:{port + 1}"]}
        assert sup.stop() == 0
    finally:
        sup.kill_all()


@pytest.mark.parametrize("content, error", [
    ('[[partition]]\nname = "a"\n', "every partition needs a url"),
    ('[[partition]]\nname = "a"\nurl = "http://127.0.0.1:1"\n'
     '[[partition]]\nname = "b"\nurl = "http://127.0.0.1:2"\nprefixes = ["/x/"]\n'
     '[[partition]]\nname = "c"\nurl = "http://127.0.0.1:3"\nprefixes = ["/x/y/"]\n',
     "partition 'c': prefix '/x/y/' overlaps '/x/' of partition 'b'"),
    ('[[partition]]\nname = "a"\nurl = "http://127.0.0.1:1"\nprefixes = "/x/"\n',
     "partition 1 (a): prefixes must be a list of strings"),
    ('[[partition]]\nname = "a"\nurl = "http://127.0.0.1:1"\nport = 3\n',
     "partition 1 (a): unknown field 'port'"),
    ('[[partition]\n', "not valid TOML"),
])
def test_a_bad_partitions_file_is_refused_with_a_clear_error(tmp_path, content, error):
    conf = tmp_path / "parts.toml"
    conf.write_text(content)
    r = subprocess.run([sys.executable, "-m", "kvstore", "serve", "--partitions", str(conf),
                        "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                       timeout=30, cwd=REPO)
    assert r.returncode == 1
    assert error in r.stderr
    assert str(conf) in r.stderr


def test_a_busy_metrics_port_is_refused_with_etcds_wording(tmp_path):
    port = free_port_run(7)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port + 2))
        busy.listen(1)
        r = subprocess.run([sys.executable, "-m", "kvstore", "serve", "--profile", "kube",
                            "--listen-client-urls", f"http://127.0.0.1:{port}",
                            "--data-dir", str(tmp_path / "d")],
                           capture_output=True, text=True, timeout=30, cwd=REPO)
    assert r.returncode == 1
    assert f"listen tcp 127.0.0.1:{port + 2}: bind: address already in use" in r.stderr
    # Nothing was started: no worker holds the default partition's port.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_workers_own_flag_given_to_the_supervisor_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kvstore", "serve", "--profile", "kube",
                        "--advertise-client-urls", "http://10.0.0.1:2379",
                        "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=30, cwd=REPO)
    assert r.returncode == 1
    assert "--advertise-client-urls is a worker's own" in r.stderr
