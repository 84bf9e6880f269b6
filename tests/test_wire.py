"""The wire encoders (ext/kv_wire.pxi and its twin kvstore/mvcc/wire.py) against protobuf's own
serializer: byte-identical output on generated messages, edge values included."""
from hypothesis import given, settings, strategies as st

import kvstore._ext.mvcc_core as compiled  # must be built: a missing build fails here
from kvstore.api import kv_pb2, rpc_pb2 as pb
from kvstore.mvcc import kv as py_kv, wire as py_wire

INT64 = st.one_of(st.integers(-2**63, 2**63 - 1), st.sampled_from([0, 1, 127, 128, 16383, 16384,
                                                                   -1, 2**63 - 1, -2**63]))
UINT64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 127, 128, 2**64 - 1]))
BLOB = st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"\0", b"x" * 128, b"y" * 16384]))
KV_FIELDS = st.tuples(BLOB, INT64, INT64, INT64, BLOB, INT64)

IMPLS = [(py_kv.KeyValue, py_wire), (compiled.KeyValue, compiled)]


def pb_kv(fields, keys_only=False):
    key, create, mod, version, value, lease = fields
    return kv_pb2.KeyValue(key=key, create_revision=create, mod_revision=mod, version=version,
                           value=b"" if keys_only else value, lease=lease)


@settings(max_examples=300)
@given(KV_FIELDS)
def test_key_value_encoding_is_protobufs(fields):
    expect = pb_kv(fields).SerializeToString()
    keys_only = pb_kv(fields, keys_only=True).SerializeToString()
    for KeyValue, wire in IMPLS:
        kv = KeyValue(*fields)
        assert kv.encoded == expect
        assert wire.encode_kv(*fields)[0] == expect
        assert kv.as_tuple() == fields  # the value read back out of the encoding
        assert wire.kv_bytes(kv, True) == keys_only
        assert wire.kv_bytes(kv, False) == expect


def test_tombstone_encoding():
    for KeyValue, _ in IMPLS:
        t = KeyValue.tombstone(b"k", 300)
        assert t.encoded == kv_pb2.KeyValue(key=b"k", mod_revision=300).SerializeToString()
        assert t.value == b"" and t.is_tombstone


@settings(max_examples=200)
@given(st.tuples(UINT64, UINT64, INT64, UINT64))
def test_header_encoding_is_protobufs(h):
    expect = pb.ResponseHeader(cluster_id=h[0], member_id=h[1], revision=h[2],
                               raft_term=h[3]).SerializeToString()
    for _, wire in IMPLS:
        assert wire.encode_header(*h) == expect


@settings(max_examples=200)
@given(st.one_of(st.none(), st.tuples(UINT64, UINT64, INT64, UINT64)),
       st.lists(KV_FIELDS, max_size=6), st.booleans(), st.booleans(), INT64)
def test_range_response_encoding_is_protobufs(h, kvs, keys_only, more, count):
    expect = pb.RangeResponse(kvs=[pb_kv(f, keys_only) for f in kvs], more=more, count=count)
    if h is not None:
        expect.header.CopyFrom(pb.ResponseHeader(cluster_id=h[0], member_id=h[1], revision=h[2],
                                                 raft_term=h[3]))
    expect_bytes = expect.SerializeToString()
    stream = pb.RangeStreamResponse(range_response=expect).SerializeToString()
    for KeyValue, wire in IMPLS:
        header = None if h is None else wire.encode_header(*h)
        got = wire.range_response(header, [KeyValue(*f) for f in kvs], keys_only, more, count)
        assert got == expect_bytes
        assert wire.range_stream_response(got) == stream


def test_empty_range_stream_chunk_still_carries_its_range_response():
    for _, wire in IMPLS:
        assert wire.range_stream_response(b"") == pb.RangeStreamResponse(
            range_response=pb.RangeResponse()).SerializeToString()


def live(fields):
    """A live revision has a version: version 0 is what marks a tombstone (a DELETE event)."""
    return fields if fields[3] else fields[:3] + (1,) + fields[4:]


@settings(max_examples=200)
@given(KV_FIELDS, st.one_of(st.none(), KV_FIELDS), st.booleans())
def test_event_encoding_is_protobufs(fields, prev_fields, tombstone):
    if tombstone:
        fields = (fields[0], 0, fields[2], 0, b"", 0)
    else:
        fields = live(fields)
    expect = kv_pb2.Event(type=kv_pb2.Event.DELETE if tombstone else kv_pb2.Event.PUT,
                          kv=pb_kv(fields))
    if prev_fields is not None:
        expect.prev_kv.CopyFrom(pb_kv(prev_fields))
    for KeyValue, wire in IMPLS:
        kv = KeyValue.tombstone(fields[0], fields[2]) if tombstone else KeyValue(*fields)
        prev = None if prev_fields is None else KeyValue(*prev_fields)
        assert wire.event(kv, prev) == expect.SerializeToString()


@settings(max_examples=200)
@given(st.tuples(UINT64, UINT64, INT64, UINT64), INT64,
       st.lists(st.tuples(KV_FIELDS, st.one_of(st.none(), KV_FIELDS)), max_size=5), st.booleans())
def test_watch_response_encoding_is_protobufs(h, watch_id, events, fragment):
    header = pb.ResponseHeader(cluster_id=h[0], member_id=h[1], revision=h[2], raft_term=h[3])
    events = [(live(f), pf) for f, pf in events]
    pb_events = []
    for f, pf in events:
        ev = kv_pb2.Event(kv=pb_kv(f))
        if pf is not None:
            ev.prev_kv.CopyFrom(pb_kv(pf))
        pb_events.append(ev)
    expect = pb.WatchResponse(header=header, watch_id=watch_id, fragment=fragment,
                              events=pb_events).SerializeToString()
    for KeyValue, wire in IMPLS:
        encoded = [wire.event(KeyValue(*f), None if pf is None else KeyValue(*pf))
                   for f, pf in events]
        got = wire.watch_response(wire.encode_header(*h), watch_id, encoded, fragment)
        assert got == expect
        assert wire.watch_response_size(wire.encode_header(*h), watch_id, encoded,
                                        fragment) == len(expect)
        assert sum(wire.event_field_size(e) for e in encoded) == len(
            pb.WatchResponse(events=pb_events).SerializeToString())


def test_empty_sub_messages_are_still_written():
    """A present KeyValue with every field zero is the two bytes tag+0, not nothing."""
    for KeyValue, wire in IMPLS:
        empty = KeyValue(b"", 0, 0, 1, b"", 0)
        zero = KeyValue(b"", 0, 0, 0, b"", 0)
        assert wire.event(empty, zero) == kv_pb2.Event(
            kv=kv_pb2.KeyValue(version=1), prev_kv=kv_pb2.KeyValue()).SerializeToString()


HEADER = st.tuples(UINT64, UINT64, INT64, UINT64)


def pb_header(h):
    return pb.ResponseHeader(cluster_id=h[0], member_id=h[1], revision=h[2], raft_term=h[3])


@settings(max_examples=200)
@given(HEADER, st.one_of(st.none(), KV_FIELDS), INT64, st.lists(KV_FIELDS, max_size=4))
def test_put_and_delete_range_responses_are_protobufs(h, prev, deleted, prevs):
    put = pb.PutResponse(header=pb_header(h))
    if prev is not None:
        put.prev_kv.CopyFrom(pb_kv(prev))
    delete = pb.DeleteRangeResponse(header=pb_header(h), deleted=deleted,
                                    prev_kvs=[pb_kv(f) for f in prevs])
    for KeyValue, wire in IMPLS:
        header = wire.encode_header(*h)
        assert wire.put_response(header, None if prev is None else KeyValue(*prev)) == \
            put.SerializeToString()
        assert wire.delete_range_response(header, deleted, [KeyValue(*f) for f in prevs]) == \
            delete.SerializeToString()


@settings(max_examples=200)
@given(HEADER, INT64, INT64)
def test_lease_keepalive_response_is_protobufs(h, lease_id, ttl):
    expected = pb.LeaseKeepAliveResponse(header=pb_header(h), ID=lease_id, TTL=ttl).SerializeToString()
    for _, wire in IMPLS:
        assert wire.lease_keepalive_response(wire.encode_header(*h), lease_id, ttl) == expected


@settings(max_examples=200)
@given(HEADER, st.booleans(), st.lists(st.tuples(st.sampled_from(["range", "put", "delete", "txn"]),
                                                 st.one_of(st.none(), KV_FIELDS), st.booleans()),
                                       max_size=5))
def test_txn_response_is_protobufs(h, succeeded, ops):
    """Every kind of op response, a nested txn (with its empty header) included."""
    expect = pb.TxnResponse(header=pb_header(h), succeeded=succeeded)
    for kind, f, flag in ops:
        out = expect.responses.add()
        if kind == "range":
            out.response_range.CopyFrom(pb.RangeResponse(
                header=pb.ResponseHeader(revision=3), kvs=[pb_kv(f)] if f else [], more=flag))
        elif kind == "put":
            out.response_put.CopyFrom(pb.PutResponse(header=pb.ResponseHeader(revision=4)))
        elif kind == "delete":
            out.response_delete_range.CopyFrom(pb.DeleteRangeResponse(
                header=pb.ResponseHeader(revision=5), deleted=1 if f else 0))
        else:
            out.response_txn.CopyFrom(pb.TxnResponse(header=pb.ResponseHeader(), succeeded=flag))
    for KeyValue, wire in IMPLS:
        encoded = []
        for kind, f, flag in ops:
            if kind == "range":
                kvs = [KeyValue(*f)] if f else []
                encoded.append((wire.OP_RANGE, wire.range_response(
                    wire.encode_header(0, 0, 3, 0), kvs, False, flag, 0)))
            elif kind == "put":
                encoded.append((wire.OP_PUT, wire.put_response(wire.encode_header(0, 0, 4, 0), None)))
            elif kind == "delete":
                encoded.append((wire.OP_DELETE_RANGE, wire.delete_range_response(
                    wire.encode_header(0, 0, 5, 0), 1 if f else 0, [])))
            else:
                encoded.append((wire.OP_TXN, wire.txn_response(b"", flag, [])))
        assert wire.txn_response(wire.encode_header(*h), succeeded, encoded) == \
            expect.SerializeToString()
