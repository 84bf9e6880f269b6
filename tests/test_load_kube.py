"""The kube-* scenarios of kvstore load against a real kvstore and a real etcd: each runs
briefly, and what it did is read back from the server (the Leases renewed, the events on their
leases, every pod in every LIST, a watch event per pod write); routing by kube-apiserver's
--etcd-servers-overrides sends each resource to its own server."""
from __future__ import annotations

import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc
from kvstore.load.keys import prefix_end
from kvstore.load.kube.layout import EVENT_PREFIX, LEASE_PREFIX, POD_PREFIX
from kvstore.load.kube.routing import Routing, parse_overrides, read_flags_file
from kvstore.load.kube.wire import check_encoders
from kvstore.partition.kube import kube_map
from loadrun import errors, run_load as load, server  # noqa: F401 - server: a fixture
from procs import KvstoreProcess, channel

pytestmark = pytest.mark.timeout(180)
inprocess = pytest.mark.inprocess


def kvs(endpoint: str, prefix: bytes) -> list:
    with channel(endpoint) as ch:
        answer = rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=prefix, range_end=prefix_end(prefix)),
                                               timeout=10)
    return list(answer.kvs)


def test_kube_leases_renew_every_node(server, tmp_path):
    """100 nodes at 10 renewals/s (one each 10 s) for 2 s: 20 renewals, every one of them a
    GuaranteedUpdate that found the revision it expected."""
    run = load("kube-leases", "--endpoints", server.endpoint, "--nodes", "100", "--rate", "50",
               "--duration", "2", out=tmp_path / "leases.json")
    assert run["loop"] == "open" and errors(run) == {}
    renewed = run["ops"]["lease-renew"]["ok"]
    assert 95 <= renewed <= 101
    assert "lease-renew conflicts" not in run["ops"]
    leases = kvs(server.endpoint, LEASE_PREFIX)
    assert len(leases) == 100
    assert sum(kv.version - 1 for kv in leases) == renewed  # each renewal one more version
    assert all(len(kv.value) == 300 and kv.value.startswith(b"k8s\x00") for kv in leases)


def test_kube_leases_default_rate_is_a_renewal_per_node_each_10s(server, tmp_path):
    run = load("kube-leases", "--endpoints", server.endpoint, "--nodes", "200", "--duration", "1.5",
               out=tmp_path / "leases.json")
    assert run["rate"] == 20.0
    assert 28 <= run["ops"]["lease-renew"]["ok"] <= 31


def test_kube_pods_churn_and_its_watch_sees_every_write(server, tmp_path):
    run = load("kube-pods", "--endpoints", server.endpoint, "--pods", "20", "--clients", "4",
               "--total", "500", out=tmp_path / "pods.json")
    assert errors(run) == {}
    ops = run["ops"]
    writes = sum(ops[k]["ok"] for k in ("pod-create", "pod-update", "pod-delete"))
    assert writes == 500
    # the cycle: one create, three updates, one delete
    assert (ops["pod-create"]["ok"], ops["pod-update"]["ok"], ops["pod-delete"]["ok"]) == (100, 300, 100)
    assert "pod-write conflicts" not in ops
    assert ops["pod-watch-events"]["ok"] == writes  # one event per write, none lost or doubled
    pods = kvs(server.endpoint, POD_PREFIX)
    assert len(pods) == 20  # as many created as deleted, after the 20 written ahead
    assert all(len(kv.value) == 4096 for kv in pods)


def test_kube_events_are_created_on_ttl_leases(server, tmp_path):
    run = load("kube-events", "--endpoints", server.endpoint, "--clients", "4", "--total", "300",
               "--event-ttl", "600", out=tmp_path / "events.json")
    assert errors(run) == {} and run["ops"]["event-create"]["ok"] == 300
    events = kvs(server.endpoint, EVENT_PREFIX)
    assert len(events) == 300
    leases = {kv.lease for kv in events}
    assert 0 not in leases and len(leases) == 1  # one lease serves 60 s or 1,000 events
    with channel(server.endpoint) as ch:
        ttl = rpc_pb2_grpc.LeaseStub(ch).LeaseTimeToLive(
            pb.LeaseTimeToLiveRequest(ID=leases.pop(), keys=True), timeout=10)
    assert ttl.grantedTTL == 600 and 0 < ttl.TTL <= 600
    assert len(ttl.keys) == 300


@pytest.mark.parametrize("stream", [False, True], ids=["paged", "stream"])
def test_kube_list_sees_every_pod_in_every_list(server, tmp_path, stream):
    """etcd 3.4 has no RangeStream: --stream falls back to paged Range there."""
    run = load("kube-list", "--endpoints", server.endpoint, "--pods", "1200", "--page-size", "500",
               "--clients", "2", "--total", "6", *(["--stream"] if stream else []),
               out=tmp_path / "list.json")
    assert errors(run) == {}
    assert run["ops"]["list"]["ok"] == 6
    assert run["ops"]["list-objects"]["ok"] == 6 * 1200


def test_kube_mixed_runs_every_stream(server, tmp_path):
    run = load("kube-mixed", "--endpoints", server.endpoint, "--scale", "0.02", "--duration", "2",
               out=tmp_path / "mixed.json")
    assert errors(run) == {}
    assert run["rate"] == pytest.approx(16_000 * 0.02)
    ops = run["ops"]
    for label in ("lease-renew", "event-create", "get", "count", "pod-create", "pod-update"):
        assert ops[label]["ok"] > 0, label
    # at the profile's proportions: 7,000 GETs to 6,000 lease renewals
    assert ops["get"]["ok"] / ops["lease-renew"]["ok"] == pytest.approx(7 / 6, rel=0.1)
    assert len(kvs(server.endpoint, LEASE_PREFIX)) == 1200  # 120 renewals/s, each node every 10 s


def test_overrides_send_each_resource_to_its_own_server(tmp_path):
    """Pods to one kvstore, Leases to another (kube's syntax), events to the default one."""
    with KvstoreProcess(tmp_path / "default") as default, KvstoreProcess(tmp_path / "leases") as leases, \
            KvstoreProcess(tmp_path / "pods") as pods:
        overrides = (f"coordination.k8s.io/leases#http://{leases.endpoint},"
                     f"/pods#http://{pods.endpoint}")
        run = load("kube-mixed", "--endpoints", default.endpoint, "--etcd-servers-overrides", overrides,
                   "--scale", "0.01", "--duration", "1.5", out=tmp_path / "routed.json")
        assert errors(run) == {}
        assert run["endpoints"] == [default.endpoint, leases.endpoint, pods.endpoint]
        assert len(kvs(leases.endpoint, LEASE_PREFIX)) == 600
        assert len(kvs(pods.endpoint, POD_PREFIX)) >= 100
        assert len(kvs(default.endpoint, EVENT_PREFIX)) == run["ops"]["event-create"]["ok"] > 0
        for server, elsewhere in ((default, (LEASE_PREFIX, POD_PREFIX)), (leases, (POD_PREFIX, EVENT_PREFIX)),
                                  (pods, (LEASE_PREFIX, EVENT_PREFIX))):
            assert all(kvs(server.endpoint, p) == [] for p in elsewhere)


@inprocess
def test_the_kube_profiles_flags_file_routes_as_kube_apiserver_would(tmp_path):
    flags = kube_map("127.0.0.1", 2379).kube_apiserver_flags()
    path = tmp_path / "kube-apiserver.flags"
    path.write_text("".join(f"{k}={v}\n" for k, v in flags.items()))
    servers, overrides = read_flags_file(path)
    assert servers == ["127.0.0.1:2379"]
    routing = Routing(overrides, servers)
    connected = routing.run_endpoints(["ignored:1"])
    assert connected[0] == "127.0.0.1:2379" and len(connected) == 5
    assert routing.endpoints_for("coordination.k8s.io/leases", connected) == ["127.0.0.1:2384"]
    assert routing.endpoints_for("/pods", connected) == ["127.0.0.1:2383"]
    assert routing.endpoints_for("/events", connected) == ["127.0.0.1:2385"]
    assert routing.endpoints_for("/configmaps", connected) == ["127.0.0.1:2379"]


@inprocess
def test_overrides_in_kubes_syntax():
    assert parse_overrides("/pods#http://a:1;http://b:2,apps/deployments#https://c:3") == \
        {"/pods": ["a:1", "b:2"], "apps/deployments": ["c:3"]}
    for bad in ("/pods", "pods#http://a:1", "/pods#"):
        with pytest.raises(ValueError):
            parse_overrides(bad)


@inprocess
def test_hand_encoded_txns_are_what_protobuf_sends():
    check_encoders()
