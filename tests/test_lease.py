"""Leases against a real server process: grant, keep-alive, expiry through the log, restart."""
import time

import grpc
import pytest

from kvstore.api import kv_pb2, rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import KvstoreProcess
from watchclient import WatchClient

DELETE = kv_pb2.Event.DELETE


def stubs(server):
    ch = grpc.insecure_channel(server.endpoint)
    return rpc.KVStub(ch), rpc.LeaseStub(ch)


def keys(kv, prefix):
    return [x.key for x in kv.Range(pb.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0")).kvs]


async def test_expired_lease_deletes_its_keys_in_one_revision_with_events(kvstore_server):
    kv, lease = stubs(kvstore_server)
    g = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=1))
    assert g.TTL == 2 and g.ID > 0  # etcd's minimum TTL
    for k in (b"e/a", b"e/b", b"e/c"):
        kv.Put(pb.PutRequest(key=k, value=b"v", lease=g.ID))
    kv.Put(pb.PutRequest(key=b"e/keep", value=b"v"))
    w = WatchClient(kvstore_server.endpoint)
    try:
        await w.create(b"e/", b"e0")
        resp = await w.read(timeout=10)  # no keep-alive: expiry comes within TTL + check period
        assert [(e.type, e.kv.key) for e in resp.events] == [
            (DELETE, b"e/a"), (DELETE, b"e/b"), (DELETE, b"e/c")]
        assert len({e.kv.mod_revision for e in resp.events}) == 1
    finally:
        await w.close()
    assert keys(kv, b"e/") == [b"e/keep"]
    assert lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=g.ID)).TTL == -1
    assert g.ID not in [status.ID for status in lease.LeaseLeases(pb.LeaseLeasesRequest()).leases]


def test_keepalive_holds_a_lease_past_its_ttl(kvstore_server):
    kv, lease = stubs(kvstore_server)
    g = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2))
    kv.Put(pb.PutRequest(key=b"ka/x", value=b"v", lease=g.ID))

    def pings():
        for _ in range(8):
            yield pb.LeaseKeepAliveRequest(ID=g.ID)
            time.sleep(0.5)

    replies = list(lease.LeaseKeepAlive(pings()))
    assert [(r.ID, r.TTL) for r in replies] == [(g.ID, 2)] * 8
    assert keys(kv, b"ka/") == [b"ka/x"]  # 4 s later: still there
    ttl = lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=g.ID, keys=True))
    assert ttl.grantedTTL == 2 and 0 <= ttl.TTL <= 2 and list(ttl.keys) == [b"ka/x"]
    unknown = list(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=12345)])))
    assert [(r.ID, r.TTL) for r in unknown] == [(12345, 0)]


def test_put_with_unknown_lease_and_errors(kvstore_server):
    kv, lease = stubs(kvstore_server)
    with pytest.raises(grpc.RpcError) as e:
        kv.Put(pb.PutRequest(key=b"x", value=b"v", lease=777))
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.NOT_FOUND,
                                                   "etcdserver: requested lease not found")
    lease.LeaseGrant(pb.LeaseGrantRequest(ID=777, TTL=60))
    with pytest.raises(grpc.RpcError) as e:
        lease.LeaseGrant(pb.LeaseGrantRequest(ID=777, TTL=60))
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                   "etcdserver: lease already exists")
    with pytest.raises(grpc.RpcError) as e:
        lease.LeaseGrant(pb.LeaseGrantRequest(ID=778, TTL=9_000_000_001))
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.OUT_OF_RANGE,
                                                   "etcdserver: too large lease TTL")
    with pytest.raises(grpc.RpcError) as e:
        lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=779))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    r = kv.Put(pb.PutRequest(key=b"x", value=b"v", lease=777))
    r2 = lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=777))
    assert r2.header.revision == r.header.revision + 1  # the key's delete took one revision
    assert keys(kv, b"x") == []


def test_leases_survive_restart_with_renewed_ttl_and_expiry_is_logged(tmp_path):
    server = KvstoreProcess(tmp_path / "kv").start()
    try:
        kv, lease = stubs(server)
        long = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID
        short = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2)).ID
        kv.Put(pb.PutRequest(key=b"l/long", value=b"v", lease=long))
        kv.Put(pb.PutRequest(key=b"l/short", value=b"v", lease=short))
        time.sleep(1.0)
        server.kill()
        server = KvstoreProcess(tmp_path / "kv", port=server.port).start()
        kv, lease = stubs(server)
        ttl = lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=long, keys=True))
        assert ttl.TTL >= 28 and list(ttl.keys) == [b"l/long"]  # renewed to the full TTL
        deadline = time.monotonic() + 10
        while b"l/short" in keys(kv, b"l/") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert keys(kv, b"l/") == [b"l/long"]
        rev = kv.Range(pb.RangeRequest(key=b"l/")).header.revision
        server.kill()  # the expiry revoke was a log entry: replay must agree
        server = KvstoreProcess(tmp_path / "kv", port=server.port).start()
        kv, lease = stubs(server)
        assert keys(kv, b"l/") == [b"l/long"]
        assert kv.Range(pb.RangeRequest(key=b"l/")).header.revision == rev
        assert [status.ID for status in lease.LeaseLeases(pb.LeaseLeasesRequest()).leases] == [long]
    finally:
        server.stop()


def test_a_keepalive_stream_answers_every_request_in_order_with_the_current_header(kvstore_server):
    """The h2 transport answers keep-alives on the spot (no task per stream): pipelined
    requests, known and unknown leases, each answered once, in order, with a full header; the
    stream is counted once by the interceptor, as etcd counts it."""
    kv, lease = stubs(kvstore_server)
    a, b = (lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID for _ in range(2))
    rev = kv.Put(pb.PutRequest(key=b"ka/order", value=b"v")).header.revision
    status = rpc.MaintenanceStub(grpc.insecure_channel(kvstore_server.endpoint)).Status(pb.StatusRequest())
    ids = [a, b, 999_999, a] * 50
    replies = list(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=i) for i in ids])))
    assert [(r.ID, r.TTL) for r in replies] == [(i, 0 if i == 999_999 else 30) for i in ids]
    assert {(r.header.revision, r.header.member_id, r.header.cluster_id) for r in replies} == {
        (rev, status.header.member_id, status.header.cluster_id)}
    assert replies[0].header.raft_term == status.header.raft_term
    # after answers given at once, a stream that ends is ended with status OK (no error raised
    # above), and the server goes on serving keep-alives on new streams
    again = list(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=b)])))
    assert [(r.ID, r.TTL) for r in again] == [(b, 30)]
