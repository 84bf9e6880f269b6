"""kvstore.Partitions: the kube profile's map in one process, a Store per partition."""
import pytest

import kvstore
from kvstore import errors
from kvstore.api import rpc_pb2 as pb
from kvstore.log import DataDirInUse
from kvstore.partition import Partition, PartitionMap

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess

POD = b"/registry/pods/default/web-0"
NODE = b"/registry/minions/node-1"
EVENT = b"/registry/events/default/web-0.1"
CM = b"/registry/configmaps/default/cm"


@pytest.fixture
async def parts():
    p = await kvstore.Partitions.open()
    yield p
    await p.close()


def all_keys(store):
    return [kv.key for kv in store.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00")).kvs]


def put_op(key, value=b"v"):
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))


def prefix_range(prefix):
    return pb.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]))


async def test_keys_go_to_their_partition_only(parts):
    assert set(parts.stores) == {"default", "nodes", "pods", "leases", "events"}
    for key in (POD, NODE, EVENT, CM):
        await parts.put(pb.PutRequest(key=key, value=b"v"))
    owners = {"pods": [POD], "nodes": [NODE], "events": [EVENT], "default": [CM], "leases": []}
    for name, keys in owners.items():
        assert all_keys(parts.stores[name]) == keys, name
    assert parts.store_for(POD) is parts.stores["pods"]
    assert parts.store_for(b"/registry/pods") is parts.stores["default"]
    got = parts.range(pb.RangeRequest(key=POD))
    assert [(kv.key, kv.value) for kv in got.kvs] == [(POD, b"v")]
    assert not parts.range(pb.RangeRequest(key=b"/registry/pods")).kvs


async def test_revisions_are_per_partition(parts):
    await parts.put(pb.PutRequest(key=NODE, value=b"n"))
    nodes_rev = parts.range(pb.RangeRequest(key=NODE)).header.revision
    for i in range(5):
        r = await parts.put(pb.PutRequest(key=POD + b"%d" % i, value=b"p"))
    assert r.header.revision == nodes_rev + 4  # pods started where nodes did, 5 puts ago
    assert parts.range(pb.RangeRequest(key=NODE)).header.revision == nodes_rev
    assert parts.stores["nodes"].mvcc.current_rev == nodes_rev
    # each partition compacts on its own revisions
    await parts.compact(r.header.revision, "pods")
    with pytest.raises(errors.Compacted):
        parts.range(pb.RangeRequest(key=POD + b"0", revision=2))
    assert parts.range(pb.RangeRequest(key=NODE, revision=nodes_rev)).kvs


async def test_range_within_one_prefix(parts):
    for i in range(3):
        await parts.put(pb.PutRequest(key=POD + b"%d" % i, value=b"p"))
    await parts.put(pb.PutRequest(key=CM, value=b"c"))
    got = parts.range(prefix_range(b"/registry/pods/"))
    assert [kv.key for kv in got.kvs] == [POD + b"%d" % i for i in range(3)]
    assert got.count == 3
    got = parts.range(prefix_range(b"/registry/configmaps/"))
    assert [kv.key for kv in got.kvs] == [CM]


async def test_requests_across_partitions_raise(parts):
    await parts.put(pb.PutRequest(key=POD, value=b"p"))
    with pytest.raises(ValueError, match="nodes, pods"):
        parts.range(pb.RangeRequest(key=b"/registry/minions/", range_end=b"/registry/pods0"))
    with pytest.raises(ValueError, match="partitions"):
        parts.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00"))
    with pytest.raises(ValueError, match="pods, default"):  # "/registry/pods" is a default key
        parts.range(pb.RangeRequest(key=b"/registry/pods", range_end=b"/registry/pods0"))
    with pytest.raises(ValueError, match="partitions"):
        await parts.delete_range(pb.DeleteRangeRequest(key=b"/registry/", range_end=b"/registry0"))
    with pytest.raises(ValueError, match="pods, nodes"):
        await parts.txn(pb.TxnRequest(success=[put_op(POD), put_op(NODE)]))
    with pytest.raises(ValueError, match="pods, events"):  # a compare in one, an op in another
        await parts.txn(pb.TxnRequest(
            compare=[pb.Compare(key=POD, target=pb.Compare.VERSION, version=0)],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=EVENT))]))
    with pytest.raises(ValueError, match="pods, default"):  # in a nested txn
        await parts.txn(pb.TxnRequest(success=[
            put_op(POD),
            pb.RequestOp(request_txn=pb.TxnRequest(failure=[put_op(CM)]))]))
    # nothing was written anywhere
    assert all_keys(parts.stores["pods"]) == [POD]
    assert all_keys(parts.stores["nodes"]) == all_keys(parts.stores["default"]) == []


async def test_txn_on_one_partition(parts):
    cmp = [pb.Compare(key=POD, target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=0)]
    txn = pb.TxnRequest(compare=cmp, success=[put_op(POD, b"created")],
                        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=POD))])
    r = await parts.txn(txn)
    assert r.succeeded
    r = await parts.txn(txn)  # the pod exists now: the compare fails, the range answers
    assert not r.succeeded
    assert [kv.value for kv in r.responses[0].response_range.kvs] == [b"created"]
    # nested txns and deletes within the partition route too
    r = await parts.txn(pb.TxnRequest(success=[
        pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=POD)),
        pb.RequestOp(request_txn=pb.TxnRequest(success=[put_op(POD + b"x")]))]))
    assert r.succeeded
    assert all_keys(parts.stores["pods"]) == [POD + b"x"]
    assert all_keys(parts.stores["default"]) == []
    d = await parts.delete_range(pb.DeleteRangeRequest(key=b"/registry/pods/",
                                                       range_end=b"/registry/pods0"))
    assert d.deleted == 1


async def test_event_with_lease_in_events_partition(parts):
    lease = await parts.lease_grant(pb.LeaseGrantRequest(TTL=60), "events")
    assert lease.ID and lease.TTL == 60
    await parts.put(pb.PutRequest(key=EVENT, value=b"e", lease=lease.ID))
    kv = parts.range(pb.RangeRequest(key=EVENT)).kvs[0]
    assert kv.lease == lease.ID
    ttl = await parts.lease_time_to_live(pb.LeaseTimeToLiveRequest(ID=lease.ID, keys=True),
                                         "events")
    assert list(ttl.keys) == [EVENT]
    assert (await parts.lease_keepalive(lease.ID, "events")).TTL == 60
    # the lease is unknown to the other partitions
    assert (await parts.lease_time_to_live(pb.LeaseTimeToLiveRequest(ID=lease.ID))).TTL == -1
    with pytest.raises(errors.LeaseNotFound):
        await parts.put(pb.PutRequest(key=POD, value=b"p", lease=lease.ID))
    await parts.lease_revoke(pb.LeaseRevokeRequest(ID=lease.ID), "events")
    assert not parts.range(pb.RangeRequest(key=EVENT)).kvs
    with pytest.raises(KeyError, match="no partition 'evnets'"):
        await parts.lease_grant(pb.LeaseGrantRequest(TTL=60), "evnets")


async def test_lmdb_partitions_reopen_with_their_data(tmp_path):
    parts = await kvstore.Partitions.open(backend="lmdb", data_dir=tmp_path / "kv")
    try:
        await parts.put(pb.PutRequest(key=POD, value=b"p"))
        await parts.put(pb.PutRequest(key=NODE, value=b"n1"))
        await parts.put(pb.PutRequest(key=NODE, value=b"n2"))
        await parts.put(pb.PutRequest(key=CM, value=b"c"))
        revs = {name: s.mvcc.current_rev for name, s in parts.stores.items()}
    finally:
        await parts.close()
    assert sorted(p.name for p in (tmp_path / "kv").iterdir()) == sorted(revs)

    parts = await kvstore.Partitions.open(backend="lmdb", data_dir=tmp_path / "kv")
    try:
        assert {name: s.mvcc.current_rev for name, s in parts.stores.items()} == revs
        assert parts.range(pb.RangeRequest(key=NODE)).kvs[0].value == b"n2"
        assert parts.range(pb.RangeRequest(key=POD)).kvs[0].value == b"p"
        assert all_keys(parts.stores["pods"]) == [POD]
        assert all_keys(parts.stores["default"]) == [CM]
    finally:
        await parts.close()


async def test_open_failure_closes_what_was_opened(tmp_path):
    # The pods dir is in use: the partitions opened before it must be closed (their dirs
    # unlocked), or opening again would fail on them.
    blocker = await kvstore.Store.open("lmdb", tmp_path / "kv" / "pods")
    try:
        with pytest.raises(DataDirInUse):
            await kvstore.Partitions.open(backend="lmdb", data_dir=tmp_path / "kv")
    finally:
        await blocker.close()
    parts = await kvstore.Partitions.open(backend="lmdb", data_dir=tmp_path / "kv")
    await parts.close()


async def test_open_options(tmp_path):
    with pytest.raises(ValueError, match="data directory"):
        await kvstore.Partitions.open(backend="lmdb")
    with pytest.raises(ValueError, match="memory or lmdb"):
        await kvstore.Partitions.open(backend="nats://127.0.0.1:4222", data_dir=tmp_path)
    # lmdb://root is the root of the partitions' dirs; a custom map
    pmap = PartitionMap.of([Partition("main"), Partition("hot", (b"hot/",))])
    parts = await kvstore.Partitions.open(pmap, backend=f"lmdb://{tmp_path / 'r'}")
    try:
        assert parts.map is pmap
        await parts.put(pb.PutRequest(key=b"hot/1", value=b"h"))
        assert all_keys(parts.stores["hot"]) == [b"hot/1"]
        assert all_keys(parts.stores["main"]) == []
        lease = await parts.lease_grant(pb.LeaseGrantRequest(TTL=60))  # the default: "main"
        assert (await parts.stores["main"].lease_time_to_live(
            pb.LeaseTimeToLiveRequest(ID=lease.ID))).TTL > 0
    finally:
        await parts.close()
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["hot", "main"]
