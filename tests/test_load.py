"""kvstore load against real servers: a kvstore and Debian's etcd, each run of the load
generator a real command (python -m kvstore load ...) or its entry function in this process,
its outcome read back from results.json and from the server itself."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc
from kvstore.load.keys import prefix_end
from kvstore.server.cli import main as kvstore_main
from procs import REPO, SERVER_KINDS, EtcdProcess, KvstoreProcess, channel

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request, tmp_path_factory):
    """One kvstore and one etcd for the module (each test uses its own --prefix)."""
    kind = KvstoreProcess if request.param == "kvstore" else EtcdProcess
    with kind(tmp_path_factory.mktemp(request.param) / "data") as s:
        yield s


@pytest.fixture(scope="module", params=SERVER_KINDS)
def auth_server(request, tmp_path_factory):
    """A kvstore and an etcd with auth on, root's password "secret"."""
    kind = KvstoreProcess if request.param == "kvstore" else EtcdProcess
    with kind(tmp_path_factory.mktemp(f"{request.param}-auth") / "data") as s:
        with channel(s.endpoint) as ch:
            auth = rpc_pb2_grpc.AuthStub(ch)
            auth.UserAdd(pb.AuthUserAddRequest(name="root", password="secret"), timeout=10)
            auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
            auth.AuthEnable(pb.AuthEnableRequest(), timeout=10)
        yield s


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A kvstore and an etcd at once, for --compare."""
    with KvstoreProcess(tmp_path_factory.mktemp("kv-cmp") / "data") as kv, \
            EtcdProcess(tmp_path_factory.mktemp("etcd-cmp") / "data") as etcd:
        yield kv, etcd


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def load_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """python -m kvstore load ARGS, importing kvstore from this tree."""
    return subprocess.run([sys.executable, "-m", "kvstore", "load", *args], capture_output=True,
                          text=True, env=_env(), cwd=str(REPO), timeout=timeout,
                          stdin=subprocess.DEVNULL)  # no terminal: nothing prompts


def load_here(*args: str) -> int:
    """The same command's entry function, in this process (no interpreter to start)."""
    return kvstore_main(["load", *args])


def results(path: Path) -> dict:
    document = json.loads(path.read_text())
    assert document["format"] == "kvstore-load/1"
    return document


def count_keys(endpoint: str, prefix: str) -> int:
    with channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        answer = kv.Range(pb.RangeRequest(key=prefix.encode(), range_end=prefix_end(prefix.encode()),
                                          count_only=True), timeout=10)
    return answer.count


def test_put_through_the_cli(server, tmp_path):
    out = tmp_path / "put.json"
    done = load_cli("put", "--endpoints", server.endpoint, "--total", "300", "--clients", "4",
                    "--sequential-keys", "--key-space-size", "300", "--prefix", "/t-put/",
                    "--out", str(out))
    assert done.returncode == 0, done.stderr
    run = results(out)["runs"][0]
    assert run["ended"] == "completed"
    assert run["ops"]["put"]["ok"] == 300
    assert run["ops"]["put"]["errors"] == {}
    assert 0 < run["ops"]["put"]["latency_ms"]["p50"] <= run["ops"]["put"]["latency_ms"]["p99"]
    assert sum(s["ops"]["put"]["ok"] for s in run["series"]) == 300
    assert run["cpu_seconds"]["workers"] > 0
    assert "put" in done.stdout and "p99.9 ms" in done.stdout  # the table
    assert count_keys(server.endpoint, "/t-put/") == 300  # every key written, once each


@pytest.mark.parametrize("consistency", ["l", "s"])
def test_range_reads_prepared_keys(server, tmp_path, consistency):
    out = tmp_path / "range.json"
    assert load_here("range", "--endpoints", server.endpoint, "--consistency", consistency,
                     "--key-space-size", "100", "--total", "200", "--clients", "8",
                     "--prefix", f"/t-range-{consistency}/", "--quiet", "--out", str(out)) == 0
    run = results(out)["runs"][0]
    assert run["ops"]["range"]["ok"] == 200 and run["ops"]["range"]["errors"] == {}
    assert count_keys(server.endpoint, f"/t-range-{consistency}/") == 100  # prepared


def test_txn_put(server, tmp_path):
    out = tmp_path / "txn.json"
    assert load_here("txn-put", "--endpoints", server.endpoint, "--txn-ops", "3",
                     "--key-space-size", "30", "--sequential-keys", "--total", "10",
                     "--prefix", "/t-txn/", "--quiet", "--out", str(out)) == 0
    run = results(out)["runs"][0]
    assert run["ops"]["txn-put"]["ok"] == 10
    assert count_keys(server.endpoint, "/t-txn/") == 30  # 10 txns of 3 consecutive keys


def test_delete_empties_the_key_space(server, tmp_path):
    out = tmp_path / "delete.json"
    assert load_here("delete", "--endpoints", server.endpoint, "--key-space-size", "60",
                     "--total", "60", "--clients", "4", "--prefix", "/t-delete/", "--quiet",
                     "--out", str(out)) == 0
    assert results(out)["runs"][0]["ops"]["delete"]["ok"] == 60
    assert count_keys(server.endpoint, "/t-delete/") == 0


def test_errors_are_counted_by_the_servers_code(server, tmp_path):
    """A value over the server's request size limit: the same code grpcio gets, per request."""
    value_size = 2 * 1024 * 1024  # over both servers' default --max-request-bytes (1.5 MiB)
    with channel(server.endpoint) as ch, pytest.raises(grpc.RpcError) as refused:
        rpc_pb2_grpc.KVStub(ch).Put(pb.PutRequest(key=b"/t-big/x", value=b"x" * value_size), timeout=10)
    expected = refused.value.code().name
    out = tmp_path / "errors.json"
    assert load_here("put", "--endpoints", server.endpoint, "--val-size", str(value_size),
                     "--total", "3", "--prefix", "/t-big/", "--quiet", "--out", str(out)) == 0
    op = results(out)["runs"][0]["ops"]["put"]
    assert op["ok"] == 0 and op["errors"] == {expected: 3}
    assert expected in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT")


def test_open_loop_sends_at_the_rate(server, tmp_path):
    out = tmp_path / "rate.json"
    assert load_here("put", "--endpoints", server.endpoint, "--rate", "200", "--duration", "2",
                     "--prefix", "/t-rate/", "--quiet", "--out", str(out)) == 0
    run = results(out)["runs"][0]
    assert run["loop"] == "open"
    assert 380 <= run["ops"]["put"]["ok"] <= 402  # 200/s for 2 s: 400 due
    assert run["skipped"] == 0
    # Sent on the generator's clock, 200 in each whole second, however late a server answers
    # (a stall moves answers from one second to the next, not the load offered).
    full_seconds = [s for s in run["series"] if s["duration"] == 1.0]
    assert full_seconds and all(195 <= s["sent"] <= 205 for s in full_seconds)
    assert sum(s["sent"] for s in run["series"]) == run["ops"]["put"]["ok"]


def test_two_worker_processes(server, tmp_path):
    out = tmp_path / "procs.json"
    assert load_here("put", "--endpoints", server.endpoint, "--procs", "2", "--clients", "8",
                     "--conns", "2", "--total", "1000", "--sequential-keys",
                     "--key-space-size", "1000", "--prefix", "/t-procs/", "--quiet",
                     "--out", str(out)) == 0
    run = results(out)["runs"][0]
    assert run["procs"] == 2 and run["ops"]["put"]["ok"] == 1000
    # the two workers' seqs interleave: every key of the space written, none twice
    assert count_keys(server.endpoint, "/t-procs/") == 1000


def test_results_replot_from_json_alone(kvstore_server, tmp_path):
    out, png = tmp_path / "r.json", tmp_path / "during.png"
    assert load_here("put", "--endpoints", kvstore_server.endpoint, "--duration", "1.5",
                     "--clients", "4", "--quiet", "--out", str(out), "--plot", str(png)) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again.png"
    done = load_cli("plot", str(out), "--out", str(again))
    assert done.returncode == 0, done.stderr
    assert again.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    not_results = tmp_path / "other.json"
    not_results.write_text("{}")
    assert load_cli("plot", str(not_results)).returncode == 1


def test_compare_runs_both_and_prints_ratios(both, tmp_path):
    kv, etcd = both
    out, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    done = load_cli("range", "--compare", kv.endpoint, etcd.endpoint, "--total", "300",
                    "--clients", "4", "--key-space-size", "50", "--quiet", "--out", str(out),
                    "--plot", str(png))
    assert done.returncode == 0, done.stderr
    document = results(out)
    a, b = document["runs"]
    assert (a["name"], a["endpoints"], b["name"], b["endpoints"]) == \
        ("A", [kv.endpoint], "B", [etcd.endpoint])
    assert a["ops"]["range"]["ok"] == b["ops"]["range"]["ok"] == 300
    ratio = document["compare"]["range"]
    assert ratio["rate_b_over_a"] == pytest.approx(b["ops"]["range"]["rate"] / a["ops"]["range"]["rate"],
                                                   rel=0.01)
    assert "B/A" in done.stdout and "p99 B/A" in done.stdout
    assert png.exists()


def test_requests_spread_over_the_endpoints(both, tmp_path):
    """Two endpoints (here two separate servers, to see where each request went)."""
    kv, etcd = both
    out = tmp_path / "spread.json"
    assert load_here("put", "--endpoints", f"{kv.endpoint},{etcd.endpoint}", "--total", "100",
                     "--clients", "4", "--sequential-keys", "--key-space-size", "100",
                     "--prefix", "/t-spread/", "--quiet", "--out", str(out)) == 0
    assert results(out)["runs"][0]["ops"]["put"]["ok"] == 100
    # closed loop: clients 0 and 2 on the first endpoint's connection, 1 and 3 on the second's,
    # each client's share as fast as its server answers
    on_kv, on_etcd = count_keys(kv.endpoint, "/t-spread/"), count_keys(etcd.endpoint, "/t-spread/")
    assert on_kv + on_etcd == 100 and on_kv >= 10 and on_etcd >= 10
    # open loop: request by request, round robin
    assert load_here("put", "--endpoints", f"{kv.endpoint},{etcd.endpoint}", "--total", "100",
                     "--rate", "500", "--sequential-keys", "--key-space-size", "100",
                     "--prefix", "/t-spread-open/", "--quiet", "--out", str(out)) == 0
    assert count_keys(kv.endpoint, "/t-spread-open/") == count_keys(etcd.endpoint, "/t-spread-open/") == 50


def test_server_killed_mid_run_ends_it_with_partial_results(tmp_path):
    server = KvstoreProcess(tmp_path / "doomed").start()
    out = tmp_path / "lost.json"
    load = subprocess.Popen([sys.executable, "-m", "kvstore", "load", "put", "--endpoints",
                             server.endpoint, "--duration", "10", "--clients", "4", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            cwd=str(REPO))
    try:
        assert load.stdout is not None
        first = load.stdout.readline()  # the first second's progress: the load is on
        assert first.startswith("[run"), first
        server.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = load.communicate(timeout=30)
    finally:
        server.kill()
        if load.poll() is None:
            load.kill()
    assert time.monotonic() - killed < 8  # ended early, not after the 10 s
    assert load.returncode == 3, stderr
    assert f"endpoint {server.endpoint} lost at t=" in stderr
    assert f"partial results written to {out}" in stderr
    run = results(out)["runs"][0]
    assert run["ended"] == "lost" and run["lost"]["endpoint"] == server.endpoint
    assert run["ops"]["put"]["ok"] > 0
    assert run["elapsed_s"] < 9


def test_weighted_mix_interleaves_at_the_rates():
    """kube-mixed's shape: several kinds of request at fixed rates in one stream."""
    from kvstore.load.mix import WeightedMix

    mix = WeightedMix({"lease": 10000, "pod": 1000, "event": 500})
    assert mix.total_rate == 11500
    labels = [mix.label(seq) for seq in range(23 * 10)]
    assert (labels.count("lease"), labels.count("pod"), labels.count("event")) == (200, 20, 10)
    pods = [i for i, label in enumerate(labels[:23]) if label == "pod"]
    assert len(pods) == 2 and pods[1] - pods[0] >= 8  # spread out, not bunched


def test_every_connection_logs_in_with_user(auth_server, tmp_path):
    """etcd benchmark's --user: two worker processes, two connections each, all logged in; the
    password is not in the results."""
    out = tmp_path / "auth.json"
    assert load_here("put", "--endpoints", auth_server.endpoint, "--user", "root:secret",
                     "--procs", "2", "--conns", "4", "--clients", "8", "--total", "400",
                     "--prefix", "/t-auth/", "--quiet", "--out", str(out)) == 0
    document = results(out)
    op = document["runs"][0]["ops"]["put"]
    assert (op["ok"], op["errors"]) == (400, {})
    assert document["options"]["user"] == "root" and "password" not in document["options"]
    assert "secret" not in out.read_text()


def test_no_login_a_wrong_password_or_none_stop_the_run_before_it_starts(auth_server):
    anonymous = load_cli("put", "--endpoints", auth_server.endpoint, "--total", "10", "--quiet")
    assert anonymous.returncode == 1  # the scenario's preparation is refused as etcd refuses it
    assert anonymous.stderr.strip() == (f"kvstore load: preparing put on {auth_server.endpoint}: "
                                        "INVALID_ARGUMENT (3): etcdserver: user name is empty")
    wrong = load_cli("put", "--endpoints", auth_server.endpoint, "--user", "root:nope",
                     "--total", "10", "--quiet")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == (f"kvstore load: cannot connect to {auth_server.endpoint}: "
                                    "INVALID_ARGUMENT (3): etcdserver: authentication failed, "
                                    "invalid user ID or password")
    unasked = load_cli("put", "--endpoints", auth_server.endpoint, "--user", "root",
                       "--total", "10", "--quiet")
    assert (unasked.returncode, unasked.stderr.strip()) == (
        2, "kvstore load: --user root has no password: give --user root:PASSWORD or --password")
