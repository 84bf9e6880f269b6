"""Hostile clients (tests/hostile.py, each in a process of its own) against a real server: while
one attacks, a normal client on another connection keeps its p99 under 100 ms, the server's
memory stays bounded, and SIGTERM still stops it within seconds."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import KvstoreProcess, channel

# kvstore's own transport, whatever the pass (see the Makefile)
pytestmark = pytest.mark.h2_transport

ATTACK_SECONDS = 4.0
P99_LIMIT = 0.100
RSS_GROWTH_LIMIT = 200 << 20
# The JSON gateway holds one answer per connection (a MB value is ~1.4 MB of JSON) and what
# the sockets buffer: an attacker that never reads gets no more than that.
GATEWAY_RSS_GROWTH_LIMIT = 64 << 20
HOSTILE = Path(__file__).with_name("hostile.py")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Probe:
    """A normal client: small Ranges one after another on its own connection, timed; and the
    server's resident memory, sampled."""

    def __init__(self, server: KvstoreProcess):
        self.server = server
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self.server.proc is not None
        with channel(self.server.endpoint) as ch:
            kv = rpc.KVStub(ch)
            kv.Range(pb.RangeRequest(key=b"/probe"), timeout=5)  # connected before timing
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    kv.Range(pb.RangeRequest(key=b"/probe"), timeout=5)
                except grpc.RpcError as e:
                    self.errors.append(f"{e.code()}: {e.details()}")
                self.latencies.append(time.perf_counter() - t)
                self.peak_rss = max(self.peak_rss, rss(self.server.proc.pid))
                time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99)]


@pytest.fixture
def server(tmp_path):
    # kvstore's own transport (grpcio's C core has defenses of its own, not ours to test)
    with KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2"]) as s:
        yield s


def attack(name: str, server: KvstoreProcess, seconds: float = ATTACK_SECONDS) -> dict:
    proc = subprocess.Popen([sys.executable, str(HOSTILE), name, str(server.port), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # under way before the probe starts
    with Probe(server) as probe:
        time.sleep(seconds - 0.5)
    out, _ = proc.communicate(timeout=30)
    report = json.loads(out)
    report.update(probes=len(probe.latencies), p99_ms=round(probe.p99() * 1000, 1),
                  peak_rss=probe.peak_rss, probe_errors=probe.errors)
    return report


def stops_on_sigterm(server: KvstoreProcess, within: float = 5.0) -> float:
    assert server.proc is not None
    t = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(within)
    return time.monotonic() - t


@pytest.mark.parametrize("name", ["watch-flood", "keepalive-flood", "gzip-bomb", "continuation-flood",
                                  "window-update-flood", "priority-flood", "unknown-frame-flood",
                                  "rapid-reset", "unread-replies", "gateway-unread-replies",
                                  "gateway-keepalive-flood"])
def test_a_hostile_client_does_not_starve_the_others(name, server):
    with channel(server.endpoint) as ch:
        kv = rpc.KVStub(ch)
        kv.Put(pb.PutRequest(key=b"/probe", value=b"v"), timeout=5)
        kv.Put(pb.PutRequest(key=b"/hostile/big", value=b"x" * (1 << 20)), timeout=5)
    assert server.proc is not None
    before = rss(server.proc.pid)
    report = attack(name, server)
    print(report)
    assert report["probes"] > 20, report
    assert not report["probe_errors"], report
    assert report["p99_ms"] < P99_LIMIT * 1000, report
    assert report["peak_rss"] - before < RSS_GROWTH_LIMIT, report
    if name.startswith("gateway-"):
        assert report["peak_rss"] - before < GATEWAY_RSS_GROWTH_LIMIT, report
    assert stops_on_sigterm(server) < 5.0
