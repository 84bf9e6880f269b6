"""/metrics: parsed with prometheus-client's own parser, every family dashboards and alerts use
is there with a real etcd's type, help text and buckets; counters move as known requests say
(the same requests moving etcd's the same way); the process's metrics are there. Each
transport's call counting, in process (grpcio serves no /metrics, but counts). And etcdctl's
check datascale and check perf, which read /metrics and load the server, run to completion."""
from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import kvstore
from etcdctl import Etcdctl
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.log.durations import DISK_BUCKETS, DurationHistogram
from kvstore.server.metrics import Metrics
from kvstore.server.services import all_services
from kvstore.server.services.interceptor import CallInterceptor
from kvstore.server.transport.grpcio_server import GrpcioServer
from kvstore.server.transport.h2.server import H2Server
from procs import EtcdProcess, KvstoreProcess

# The families etcd's dashboards and alerts use, as a real etcd 3.4 exposes them.
ETCD_FAMILIES = [
    "etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner",
    "etcd_server_leader_changes_seen_total", "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total", "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total", "etcd_server_quota_backend_bytes", "etcd_server_id",
    "etcd_server_version", "etcd_cluster_version", "etcd_server_client_requests_total",
    "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_current_revision", "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_watcher_total", "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds",
    "grpc_server_started_total", "grpc_server_handled_total",
    "etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
    "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
    "process_max_fds", "process_start_time_seconds", "process_virtual_memory_bytes",
]
PUT = {"grpc_method": "Put", "grpc_service": "etcdserverpb.KV", "grpc_type": "unary"}
RANGE = {"grpc_method": "Range", "grpc_service": "etcdserverpb.KV", "grpc_type": "unary"}
WATCH = {"grpc_method": "Watch", "grpc_service": "etcdserverpb.Watch", "grpc_type": "bidi_stream"}


class Scrape:
    """One /metrics answer, parsed."""

    def __init__(self, text: str, content_type: str = ""):
        self.content_type = content_type
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def family(self, name: str):
        """By its name in the text (the parser drops a counter's _total)."""
        found = self.families.get(name) or self.families.get(name.removesuffix("_total"))
        assert found is not None, f"no {name} family"
        return found

    def value(self, name: str, **labels: str) -> float:
        family = self.family(name.removesuffix("_count").removesuffix("_sum"))
        matches = [s.value for s in family.samples if s.name == name and s.labels == labels]
        assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples"
        return matches[0]


def scrape(server) -> Scrape:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as r:
        return Scrape(r.read().decode(), r.headers["Content-Type"])


def _buckets(family) -> list[str]:
    return [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]


# -- a real server against a real etcd (the HTTP endpoints are the h2 transport's) --------------

@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    with KvstoreProcess(root / "kv", extra_args=["--transport", "h2"]) as kv, \
            EtcdProcess(root / "etcd") as etcd:
        yield kv, etcd


@pytest.mark.h2_transport
def test_families_have_etcds_names_types_help_and_buckets(servers):
    kv, etcd = servers
    ours, theirs = scrape(kv), scrape(etcd)
    assert ours.content_type == theirs.content_type == "text/plain; version=0.0.4; charset=utf-8"
    for name in ETCD_FAMILIES:
        a, b = ours.family(name), theirs.family(name)
        assert (a.type, a.documentation) == (b.type, b.documentation), name
        if a.type == "histogram":
            assert _buckets(a) == _buckets(b) == [*map(str, DISK_BUCKETS), "+Inf"], name
    for name in ("grpc_server_started_total", "grpc_server_handled_total"):
        label_names = {frozenset(s.labels) for s in ours.family(name).samples}
        assert label_names == {frozenset(s.labels) for s in theirs.family(name).samples}, name
    # every method with every code from the start, as go-grpc-prometheus initializes them
    for code in ("OK", "Canceled", "NotFound", "Unavailable", "Unauthenticated"):
        assert ours.value("grpc_server_handled_total", grpc_code=code, **PUT) >= 0
    assert ours.value("etcd_server_has_leader") == ours.value("etcd_server_is_leader") == 1
    assert ours.value("etcd_server_leader_changes_seen_total") == 1
    assert ours.value("etcd_server_leader_changes_seen_total") == theirs.value(
        "etcd_server_leader_changes_seen_total")
    assert ours.value("etcd_server_quota_backend_bytes") == theirs.value(
        "etcd_server_quota_backend_bytes") == 2 * 1024**3  # the default of both
    assert ours.value("process_resident_memory_bytes") > 10e6
    assert ours.value("process_open_fds") > 3
    assert 0 < ours.value("process_cpu_seconds_total") < 600
    assert abs(ours.value("process_start_time_seconds") - time.time()) < 600


@pytest.mark.h2_transport
def test_a_restart_sees_one_leader_change_as_etcds_does(tmp_path):
    """The LEADER entries recovery replays were seen by an earlier process: not counted."""
    with KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2"]) as kv:
        _requests(kv)
    with kv:
        got = scrape(kv)
        assert got.value("etcd_server_leader_changes_seen_total") == 1
        assert got.value("etcd_debugging_mvcc_keys_total") == 5  # recovered


def _raw_call(channel, path: str, request) -> bytes:
    """A unary call's response as the server's bytes (sent bytes are counted as they were sent)."""
    return channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=None)(request)


def _requests(server) -> tuple[int, int]:
    """Known requests: 5 puts, a range at a future revision (OutOfRange), then a watch the client
    cancels. The bytes of the request messages, and of the responses to the unary calls."""
    sent = received = 0
    with grpc.insecure_channel(server.endpoint) as channel:
        for i in range(5):
            request = pb.PutRequest(key=b"metrics/%d" % i, value=b"v" * (10 * i))
            received += request.ByteSize()
            sent += len(_raw_call(channel, "/etcdserverpb.KV/Put", request))
        request = pb.RangeRequest(key=b"metrics/0", revision=1 << 40)
        received += request.ByteSize()
        with pytest.raises(grpc.RpcError) as e:
            _raw_call(channel, "/etcdserverpb.KV/Range", request)
        assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    return received, sent


def _watch_and_cancel(server) -> None:
    with grpc.insecure_channel(server.endpoint) as channel:
        requests = iter([pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"metrics/w"))])
        call = rpc.WatchStub(channel).Watch(requests)
        assert next(call).created
        call.cancel()


@pytest.mark.h2_transport
@pytest.mark.parametrize("which", ["kvstore", "etcd"])
def test_counters_move_with_known_requests(servers, which):
    server = servers[0] if which == "kvstore" else servers[1]
    before = scrape(server)
    received, sent = _requests(server)
    after = scrape(server)

    def delta(name, **labels):
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("grpc_server_started_total", **PUT) == 5
    assert delta("grpc_server_handled_total", grpc_code="OK", **PUT) == 5
    assert delta("grpc_server_started_total", **RANGE) == 1
    assert delta("grpc_server_handled_total", grpc_code="OutOfRange", **RANGE) == 1
    assert delta("grpc_server_handled_total", grpc_code="OK", **RANGE) == 0
    # the request and response messages' bytes, as etcd counts them
    assert delta("etcd_network_client_grpc_received_bytes_total") == received
    assert delta("etcd_network_client_grpc_sent_bytes_total") == sent
    assert delta("etcd_debugging_mvcc_keys_total") == 5
    assert delta("etcd_debugging_mvcc_current_revision") == 5
    assert delta("etcd_server_proposals_applied_total") >= 1
    assert after.value("etcd_server_proposals_committed_total") >= after.value(
        "etcd_server_proposals_applied_total")
    assert after.value("etcd_server_proposals_pending") == 0
    assert delta("etcd_disk_wal_fsync_duration_seconds_count") >= 1
    assert delta("etcd_disk_wal_fsync_duration_seconds_sum") > 0
    if which == "kvstore":  # each log append is one write-ahead file sync, whatever the
        # entries in it; LMDB takes the records in checkpoints, as etcd's backend commits,
        # within 100 ms of the first record after the last one
        appends = after.value("kvstore_log_appends_total")
        assert after.value("etcd_disk_wal_fsync_duration_seconds_count") == appends
        deadline = time.monotonic() + 5
        while scrape(server).value("etcd_disk_backend_commit_duration_seconds_count") \
                == before.value("etcd_disk_backend_commit_duration_seconds_count"):
            assert time.monotonic() < deadline, "no checkpoint within 5 s of the writes"
            time.sleep(0.02)

    _watch_and_cancel(server)
    deadline = time.monotonic() + 5
    while scrape(server).value("grpc_server_handled_total", grpc_code="Canceled", **WATCH) \
            == after.value("grpc_server_handled_total", grpc_code="Canceled", **WATCH):
        assert time.monotonic() < deadline, "the cancelled watch was not counted"
        time.sleep(0.05)
    assert scrape(server).value("grpc_server_started_total", **WATCH) - after.value(
        "grpc_server_started_total", **WATCH) == 1


# -- each transport's counting, in process -----------------------------------------------------

@pytest.fixture(params=["h2", "grpcio"])
async def counted(request):
    store = await kvstore.Store.open("memory")
    intercept = CallInterceptor(store)
    cls = H2Server if request.param == "h2" else GrpcioServer
    server = cls(all_services(store), 1 << 20, intercept=intercept)
    metrics = Metrics(store, intercept.client_requests)
    metrics.count_calls(server.calls)
    port = server.listen("127.0.0.1", 0)
    await server.start()
    if port is None:  # H2Server binds at start
        port = server._servers[0].sockets[0].getsockname()[1]
    yield port, metrics
    await server.stop(0.5)
    await store.close()


async def test_each_transport_counts_calls_codes_and_bytes(counted):
    port, metrics = counted
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv, watch = rpc.KVStub(channel), rpc.WatchStub(channel)
        put = pb.PutRequest(key=b"k", value=b"value")
        responses = [await kv.Put(put) for _ in range(3)]
        with pytest.raises(grpc.aio.AioRpcError):
            await kv.Range(pb.RangeRequest(key=b"k", revision=1 << 40))
        with pytest.raises(grpc.aio.AioRpcError):  # a lease that does not exist: NotFound
            await rpc.LeaseStub(channel).LeaseRevoke(pb.LeaseRevokeRequest(ID=12345))
        call = watch.Watch()
        await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k")))
        assert (await call.read()).created
        call.cancel()
        for _ in range(100):  # the server hears of the cancellation
            got = Scrape(metrics.exposition().decode())
            if got.value("grpc_server_handled_total", grpc_code="Canceled", **WATCH) == 1:
                break
            await asyncio.sleep(0.02)
    assert got.value("grpc_server_started_total", **PUT) == 3
    assert got.value("grpc_server_handled_total", grpc_code="OK", **PUT) == 3
    assert got.value("grpc_server_handled_total", grpc_code="OutOfRange", **RANGE) == 1
    assert got.value("grpc_server_handled_total", grpc_code="NotFound", grpc_method="LeaseRevoke",
                     grpc_service="etcdserverpb.Lease", grpc_type="unary") == 1
    assert got.value("grpc_server_started_total", **WATCH) == 1
    assert got.value("grpc_server_handled_total", grpc_code="Canceled", **WATCH) == 1
    assert got.value("etcd_network_client_grpc_received_bytes_total") == (
        3 * put.ByteSize() + pb.RangeRequest(key=b"k", revision=1 << 40).ByteSize()
        + pb.LeaseRevokeRequest(ID=12345).ByteSize()
        + pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k")).ByteSize())
    assert got.value("etcd_network_client_grpc_sent_bytes_total") >= sum(r.ByteSize() for r in responses)
    assert got.value("etcd_server_client_requests_total", client_api_version="unknown", type="unary") == 5


async def test_a_partitions_worker_labels_its_series_but_the_processs():
    store = await kvstore.Store.open("memory")
    try:
        got = Scrape(Metrics(store, partition="pods").exposition().decode())
    finally:
        await store.close()
    assert got.value("etcd_server_has_leader", partition="pods") == 1
    assert got.value("etcd_disk_wal_fsync_duration_seconds_count", partition="pods") == 0
    # unlabelled, as etcdctl check datascale reads it
    assert got.value("process_resident_memory_bytes") > 0


@pytest.mark.inprocess
def test_duration_histogram_buckets_are_cumulative_and_bounds_inclusive():
    h = DurationHistogram()
    for seconds in (0.0005, 0.001, 0.0011, 0.003, 0.5, 9.0):
        h.observe(seconds)
    buckets, total = h.cumulative()
    assert buckets[:4] == [("0.001", 2), ("0.002", 3), ("0.004", 4), ("0.008", 4)]
    assert dict(buckets)["0.512"] == 5 and dict(buckets)["8.192"] == 5
    assert buckets[-1] == ("+Inf", 6)
    assert total == pytest.approx(9.5056)


# -- etcdctl's checks, which read /metrics and load the server ---------------------------------

@pytest.mark.h2_transport
def test_etcdctl_check_datascale_completes(servers):
    kv, _ = servers
    r = Etcdctl(kv.endpoint, timeout=120).run("check", "datascale")
    assert r.returncode == 0, str(r)
    assert "Could not read" not in r.stdout + r.stderr
    assert "PASS: Approximate system memory used" in r.stdout, str(r)
    assert scrape(kv).value("etcd_debugging_mvcc_keys_total") < 100  # its keys deleted again


# etcdctl check perf's verdicts (its wording, PASS or FAIL), in the order it prints them
PERF_VERDICTS = [r"(PASS: Throughput is|FAIL: Throughput too low:) \d+ writes/s",
                 r"(PASS: Slowest request took|FAIL: Slowest request took too long:) [\d.]+s",
                 r"(PASS: Stddev is|FAIL: Stddev too high:) [\d.]+s"]


@pytest.mark.h2_transport
def test_etcdctl_check_perf_completes_and_reports(servers):
    """60 s of load (--load=s: 50 clients, 150 writes/s expected). On a busy 2-core machine it
    may report FAIL on throughput or latency; it must run to the end, report each check, and
    see no request fail."""
    kv, _ = servers
    r = Etcdctl(kv.endpoint, timeout=240).run("check", "perf", "--load=s")
    out = r.stdout.replace("\r", "\n")
    verdicts = [re.search(pattern, out) for pattern in PERF_VERDICTS]
    assert all(verdicts), str(r)
    assert [v.start() for v in verdicts] == sorted(v.start() for v in verdicts), str(r)
    final = out.rstrip().splitlines()[-1].strip()
    assert final in ("PASS", "FAIL"), str(r)
    assert (final == "PASS") == all(v.group(1).startswith("PASS") for v in verdicts), str(r)
    assert r.returncode == (0 if final == "PASS" else 1), str(r)
    assert "ERROR" not in out and "too many errors" not in out, str(r)
    print("\n".join([*(v.group(0) for v in verdicts), final]))  # what it said (pytest -s)
