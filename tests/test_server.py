"""A real server process over gRPC: serving, errors, restart and crash durability."""
import asyncio
import subprocess
import sys

import grpc
import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import REPO, KvstoreProcess


def kv_stub(server):
    return rpc.KVStub(grpc.insecure_channel(server.endpoint))


def test_put_get_and_headers(kvstore_server):
    kv = kv_stub(kvstore_server)
    r = kv.Put(pb.PutRequest(key=b"foo", value=b"bar"))
    assert r.header.revision == 2 and r.header.cluster_id and r.header.member_id
    got = kv.Range(pb.RangeRequest(key=b"foo"))
    assert [(x.key, x.value, x.version) for x in got.kvs] == [(b"foo", b"bar", 1)]
    assert got.header.member_id == r.header.member_id


def test_errors_keep_server_serving(kvstore_server):
    kv = kv_stub(kvstore_server)
    with pytest.raises(grpc.RpcError) as e:
        kv.Put(pb.PutRequest(key=b"", value=b"x"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "etcdserver: key is not provided"
    with pytest.raises(grpc.RpcError) as e:
        kv.Range(pb.RangeRequest(key=b"a", revision=100))
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert e.value.details() == "etcdserver: mvcc: required revision is a future revision"
    with pytest.raises(grpc.RpcError) as e:  # over --max-request-bytes but under the gRPC limit
        kv.Put(pb.PutRequest(key=b"big", value=b"x" * (1536 * 1024 + 10)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "etcdserver: request is too large"
    with pytest.raises(grpc.RpcError) as e:  # over the gRPC receive limit
        kv.Put(pb.PutRequest(key=b"huge", value=b"x" * (3 * 1024 * 1024)))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as e:
        rpc.MaintenanceStub(grpc.insecure_channel(kvstore_server.endpoint)).Downgrade(
            pb.DowngradeRequest())  # (etcd 3.5's; 3.4 has none either)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert kv.Put(pb.PutRequest(key=b"ok", value=b"1")).header.revision == 2


def test_status_and_member_list(kvstore_server):
    ch = grpc.insecure_channel(kvstore_server.endpoint)
    st = rpc.MaintenanceStub(ch).Status(pb.StatusRequest())
    major, minor, patch = (int(x) for x in st.version.split("."))
    assert (major, minor) == (3, 5) and patch >= 13  # kube-apiserver's watch-progress check
    assert st.leader == st.header.member_id and st.dbSize > 0
    ml = rpc.ClusterStub(ch).MemberList(pb.MemberListRequest())
    assert [m.ID for m in ml.members] == [st.header.member_id]
    assert list(ml.members[0].clientURLs) == [kvstore_server.url]


def test_restart_keeps_state_and_identity(tmp_path):
    server = KvstoreProcess(tmp_path / "kv").start()
    try:
        kv = kv_stub(server)
        for i in range(20):
            kv.Put(pb.PutRequest(key=b"k%d" % (i % 5), value=b"%d" % i))
        before = kv.Range(pb.RangeRequest(key=b"k", range_end=b"l"))
    finally:
        server.stop()
    server = KvstoreProcess(tmp_path / "kv", port=server.port).start()
    try:
        after = kv_stub(server).Range(pb.RangeRequest(key=b"k", range_end=b"l"))
        assert list(after.kvs) == list(before.kvs)
        assert after.header.revision == before.header.revision == 21
        assert (after.header.cluster_id, after.header.member_id) == \
               (before.header.cluster_id, before.header.member_id)
    finally:
        server.stop()


def test_kill_9_during_concurrent_writes_loses_no_acknowledged_write(tmp_path):
    """Writers put unique keys as fast as they can; SIGKILL lands mid-stream. After restart
    every write that was acknowledged must be there, with its value."""
    server = KvstoreProcess(tmp_path / "kv", extra_args=["--snapshot-count", "300"]).start()
    acked: dict[bytes, bytes] = {}

    async def writer(n: int, stop: asyncio.Event):
        async with grpc.aio.insecure_channel(server.endpoint) as ch:
            kv = rpc.KVStub(ch)
            i = 0
            while not stop.is_set():
                key, value = b"w%02d/%06d" % (n, i), b"value-%d-%d" % (n, i)
                try:
                    if i % 3 == 2:  # the kube-apiserver create shape
                        await kv.Txn(pb.TxnRequest(
                            compare=[pb.Compare(key=key, target=pb.Compare.MOD, mod_revision=0)],
                            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))]),
                            timeout=5)
                    else:
                        await kv.Put(pb.PutRequest(key=key, value=value), timeout=5)
                except grpc.RpcError:
                    return  # the server is gone
                acked[key] = value
                i += 1

    async def run():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(writer(n, stop)) for n in range(16)]
        while len(acked) < 1500:  # noqa: ASYNC110 - polls the writers' progress
            await asyncio.sleep(0.01)
        server.kill()
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(run())
    assert len(acked) >= 1500
    server = KvstoreProcess(tmp_path / "kv", port=server.port).start()
    try:
        got = kv_stub(server).Range(pb.RangeRequest(key=b"w", range_end=b"x"))
        stored = {kv.key: kv.value for kv in got.kvs}
        missing = [k for k in acked if stored.get(k) != acked[k]]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        assert any(p.name.startswith("snapshot-") for p in (tmp_path / "kv").iterdir())
    finally:
        server.stop()


def run_cli(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "kvstore", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_bad_flag_exits_nonzero_with_message():
    r = run_cli("serve", "--log-backend", "bogus")
    assert r.returncode != 0 and "--log-backend" in r.stderr
    r = run_cli("serve", "--listen-client-urls", "ftp://127.0.0.1:1")
    assert r.returncode != 0 and "scheme" in r.stderr
    r = run_cli("serve", "--max-txn-ops", "0")
    assert r.returncode != 0 and "--max-txn-ops" in r.stderr


def test_busy_port_exits_nonzero(kvstore_server, tmp_path):
    r = run_cli("serve", "--data-dir", str(tmp_path / "other"), "--listen-client-urls",
                kvstore_server.url)
    assert r.returncode == 1
    assert f"listen tcp {kvstore_server.endpoint}: bind: address already in use" in r.stderr
