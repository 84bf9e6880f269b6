"""KV.RangeStream (etcd 3.7): a range as chunks at one pinned revision, against a real server.

etcd 3.4 (the reference etcd here) has no RangeStream, so the reference is kvstore's own unary
Range on the same server: merging the chunks must give Range's answer.
"""
from __future__ import annotations

import grpc
import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import KvstoreProcess

BIG = 64 * 1024  # values large enough that a stream outruns the client's flow-control window


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with KvstoreProcess(tmp_path_factory.mktemp("rangestream") / "kv") as s:
        yield s


@pytest.fixture(scope="module")
def kv(server):
    with grpc.insecure_channel(server.endpoint, options=[("grpc.max_receive_message_length", -1)]) as ch:
        stub = rpc.KVStub(ch)
        for i in range(250):
            stub.Put(pb.PutRequest(key=b"s/%04d" % i, value=b"v%d" % i))
        yield stub


def chunks(kv, **fields):
    return [m.range_response for m in kv.RangeStream(pb.RangeRequest(**fields))]


def merged(parts):
    out = pb.RangeResponse()
    for p in parts:
        out.MergeFrom(p)
    return out


def test_chunks_merge_into_ranges_answer(kv):
    parts = chunks(kv, key=b"s/", range_end=b"s0")
    assert len(parts) > 3  # 10 keys first, then growing chunks
    assert [len(p.kvs) for p in parts[:2]] == [10, 20]
    assert all(not p.HasField("header") and not p.count for p in parts[:-1])
    whole = kv.Range(pb.RangeRequest(key=b"s/", range_end=b"s0"))
    assert merged(parts) == whole
    assert parts[-1].count == 250 and not parts[-1].more
    assert parts[-1].header.member_id == whole.header.member_id


@pytest.mark.parametrize("fields", [
    dict(limit=37), dict(limit=250), dict(limit=1000), dict(keys_only=True),
    dict(count_only=True), dict(sort_order=pb.RangeRequest.ASCEND),  # ASCEND by KEY is the default
    dict(sort_target=pb.RangeRequest.MOD),  # a target with no order is no order at all
])
def test_options_give_ranges_answer(kv, fields):
    req = dict(key=b"s/", range_end=b"s0", **fields)
    parts = chunks(kv, **req)
    assert merged(parts) == kv.Range(pb.RangeRequest(**req))
    if fields.get("count_only"):
        assert len(parts) == 1 and parts[0].count == 250 and not parts[0].kvs


def test_single_key_missing_key_and_old_revision(kv):
    assert merged(chunks(kv, key=b"s/0007")) == kv.Range(pb.RangeRequest(key=b"s/0007"))
    empty = chunks(kv, key=b"nothing/")
    assert len(empty) == 1 and empty[0].count == 0 and empty[0].header.revision > 1
    rev = kv.Range(pb.RangeRequest(key=b"s/0000")).header.revision
    kv.Put(pb.PutRequest(key=b"s/0000", value=b"changed"))
    at_rev = chunks(kv, key=b"s/", range_end=b"s0", revision=rev)
    assert merged(at_rev) == kv.Range(pb.RangeRequest(key=b"s/", range_end=b"s0", revision=rev))
    assert at_rev[0].kvs[0].value == b"v0"


@pytest.mark.parametrize("fields, code, message", [
    (dict(key=b""), grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"),
    (dict(key=b"s/", sort_order=99), grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: invalid sort option"),
    (dict(key=b"s/", sort_order=pb.RangeRequest.DESCEND), grpc.StatusCode.UNIMPLEMENTED,
     "RangeStream does not support custom sort orders"),
    (dict(key=b"s/", sort_order=pb.RangeRequest.ASCEND, sort_target=pb.RangeRequest.VALUE),
     grpc.StatusCode.UNIMPLEMENTED, "RangeStream does not support custom sort orders"),
    (dict(key=b"s/", min_mod_revision=1), grpc.StatusCode.UNIMPLEMENTED,
     "RangeStream does not support revision filters"),
    (dict(key=b"s/", sort_order=pb.RangeRequest.DESCEND, max_create_revision=5),
     grpc.StatusCode.UNIMPLEMENTED, "RangeStream does not support custom sort orders"),
    (dict(key=b"s/", revision=10**9), grpc.StatusCode.OUT_OF_RANGE,
     "etcdserver: mvcc: required revision is a future revision"),
])
def test_refusals_are_etcds(kv, server, fields, code, message):
    with pytest.raises(grpc.RpcError) as e:
        chunks(kv, **fields)
    assert (e.value.code(), e.value.details()) == (code, message)
    assert kv.Range(pb.RangeRequest(key=b"s/0001")).count == 1  # still serving


def test_stream_stays_at_its_revision_and_ends_when_it_is_compacted(tmp_path):
    with KvstoreProcess(tmp_path / "kv") as s, grpc.insecure_channel(
            s.endpoint, options=[("grpc.max_receive_message_length", -1)]) as ch:
        kv = rpc.KVStub(ch)
        for i in range(400):  # 25 MiB: more than the client's window, so the server must wait
            kv.Put(pb.PutRequest(key=b"b/%04d" % i, value=bytes([i % 256]) * BIG))
        rev = kv.Range(pb.RangeRequest(key=b"b/0000")).header.revision
        stream = kv.RangeStream(pb.RangeRequest(key=b"b/", range_end=b"b0"))
        first = next(stream).range_response
        # written while the stream is under way: must not show up in it
        kv.Put(pb.PutRequest(key=b"b/0399", value=b"new"))
        kv.DeleteRange(pb.DeleteRangeRequest(key=b"b/0398"))
        kv.Put(pb.PutRequest(key=b"b/9999", value=b"new"))
        rest = [m.range_response for m in stream]
        got = merged([first, *rest])
        assert [k.key for k in got.kvs] == [b"b/%04d" % i for i in range(400)]
        assert got.kvs[-1].value == bytes([399 % 256]) * BIG and got.header.revision == rev
        assert max(p.ByteSize() for p in [first, *rest]) <= 2 * (3 * 1024 * 1024 // 2) + BIG

        stream = kv.RangeStream(pb.RangeRequest(key=b"b/", range_end=b"b0", revision=rev))
        next(stream)
        kv.Compact(pb.CompactionRequest(revision=rev + 3))
        with pytest.raises(grpc.RpcError) as e:
            for _ in stream:
                pass
        assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert e.value.details() == "etcdserver: mvcc: required revision has been compacted"
