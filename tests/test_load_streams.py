"""The streaming scenarios of kvstore load (watch, watch-latency, lease-keepalive) against a
real kvstore and a real etcd: every event a put owes its watchers is counted, once."""
from __future__ import annotations

from pathlib import Path

import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc
from loadrun import errors, run_load, server  # noqa: F401 - server: a fixture
from procs import channel

pytestmark = pytest.mark.timeout(120)


def load(*args: str, out: Path) -> dict:
    run = run_load(*args, out=out)
    assert errors(run) == {}
    return run


def test_watch_counts_every_event_delivered(server, tmp_path):
    """20 watchers over 10 keys (two on each); 400 puts: 800 events."""
    run = load("watch", "--endpoints", server.endpoint, "--streams", "4", "--watch-per-stream", "5",
               "--key-space-size", "10", "--total", "400", "--clients", "4", "--prefix", "/t-watch/",
               out=tmp_path / "watch.json")
    assert run["ops"]["put"]["ok"] == 400
    assert run["ops"]["watch-events"]["ok"] == 800
    # the events are the scenario's measurement, not requests: the puts alone count per CPU-s
    assert (run["ops"]["put"]["kind"], run["ops"]["watch-events"]["kind"]) == ("request", "measure")
    # (cpu_seconds is rounded to the millisecond in the JSON and the rate to a tenth: a
    # tolerance of that much; a CPU time of exactly 33.5 ms sits on both edges)
    cpu = run["cpu_seconds"]["total"]
    low, high = 400 / (cpu + 0.0005) - 0.05, 400 / max(cpu - 0.0005, 1e-9) + 0.05
    assert low <= run["ok_per_cpu_second"] <= high


def test_watch_with_two_worker_processes(server, tmp_path):
    """Each worker's 6 watchers (one per key) see the puts of both workers."""
    run = load("watch", "--endpoints", server.endpoint, "--procs", "2", "--clients", "4",
               "--streams", "2", "--watch-per-stream", "3", "--key-space-size", "6", "--total", "300",
               "--prefix", "/t-watch2/", out=tmp_path / "watch2.json")
    assert run["ops"]["put"]["ok"] == 300
    assert run["ops"]["watch-events"]["ok"] == 2 * 300


def test_watch_latency_measures_every_watcher(server, tmp_path):
    run = load("watch-latency", "--endpoints", server.endpoint, "--streams", "2",
               "--watch-per-stream", "3", "--rate", "100", "--total", "100", "--prefix", "/t-wl/",
               out=tmp_path / "wl.json")
    assert run["loop"] == "open"
    assert run["ops"]["put"]["ok"] == 100
    latency = run["ops"]["watch-latency"]
    assert latency["ok"] == 100 * 6
    assert 0 < latency["latency_ms"]["p50"] <= latency["latency_ms"]["max"] < 1000


def test_lease_keepalive_round_trips(server, tmp_path):
    run = load("lease-keepalive", "--endpoints", server.endpoint, "--clients", "8", "--conns", "2",
               "--total", "1000", out=tmp_path / "ka.json")
    assert run["ops"]["lease-keepalive"]["ok"] == 1000
    with channel(server.endpoint) as ch:  # the run's leases are revoked at its end
        assert not rpc_pb2_grpc.LeaseStub(ch).LeaseLeases(pb.LeaseLeasesRequest(), timeout=10).leases
