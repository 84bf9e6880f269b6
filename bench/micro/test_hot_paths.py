"""In-process micro-benchmarks of the hot paths: each compiled one (ext/) next to its
pure-Python twin and, where one exists, to what the code did before it (building protobuf
messages), in the same run.

    pip install -e '.[bench]'
    python3 -m pytest bench/micro --benchmark-only --benchmark-group-by=group

Not part of the test suite (tests/ are); numbers go in bench/README.md.
"""
import pytest

import kvstore._ext.mvcc_core as compiled
from kvstore.api import kv_pb2, rpc_pb2 as pb
from kvstore.mvcc import (
    history as py_history,
    key_index as py_ki,
    kv as py_kv,
    ordered_keys as py_ordered,
    state_codec as py_codec,
    wire as py_wire,
)

IMPLS = {"cython": (compiled, compiled, compiled, compiled, compiled),
         "python": (py_kv, py_ki, py_ordered, py_wire, py_codec)}
VALUE = b"x" * 2048


def kvs_of(impl_kv, n, value=VALUE):
    return [impl_kv.KeyValue(b"/registry/pods/default/pod-%06d" % i, 100 + i, 200 + i, 3, value, 0)
            for i in range(n)]


@pytest.mark.benchmark(group="RangeResponse of 500 KeyValues x 2 KB")
@pytest.mark.parametrize("impl", ["cython", "python", "protobuf objects"])
def test_range_response_assembly(benchmark, impl):
    if impl == "protobuf objects":  # the way responses were built before pre-encoded values
        kvs = kvs_of(compiled, 500)

        def build():
            return pb.RangeResponse(header=pb.ResponseHeader(cluster_id=1, member_id=2, revision=9,
                                                             raft_term=3),
                                    kvs=[kv_pb2.KeyValue(key=kv.key, create_revision=kv.create_revision,
                                                         mod_revision=kv.mod_revision, version=kv.version,
                                                         value=kv.value, lease=kv.lease) for kv in kvs],
                                    count=500).SerializeToString()
    else:
        kv_mod, _, _, wire, _ = IMPLS[impl]
        kvs = kvs_of(kv_mod, 500)
        header = wire.encode_header(1, 2, 9, 3)

        def build():
            return wire.range_response(header, kvs, False, False, 500)
    out = benchmark(build)
    assert pb.RangeResponse.FromString(out).count == 500


@pytest.mark.benchmark(group="WatchResponse of one event with prev_kv (1 KB)")
@pytest.mark.parametrize("impl", ["cython", "python", "protobuf objects"])
def test_watch_response_assembly(benchmark, impl):
    kv_mod = compiled if impl == "protobuf objects" else IMPLS[impl][0]
    kv, prev = kvs_of(kv_mod, 2, b"y" * 1024)
    if impl == "protobuf objects":
        def build():
            ev = kv_pb2.Event(kv=kv_pb2.KeyValue.FromString(kv.encoded),
                              prev_kv=kv_pb2.KeyValue.FromString(prev.encoded))
            return pb.WatchResponse(header=pb.ResponseHeader(revision=9), watch_id=7,
                                    events=[ev]).SerializeToString()
    else:
        wire = IMPLS[impl][3]
        header = wire.encode_header(0, 0, 9, 0)

        def build():
            return wire.watch_response(header, 7, [wire.event(kv, prev)], False)
    out = benchmark(build)
    assert pb.WatchResponse.FromString(out).events[0].prev_kv.value == b"y" * 1024


@pytest.fixture(scope="module")
def indexes():
    """100k keys (one revision each, every tenth deleted) in each implementation's index."""
    out = {}
    for impl, (kv_mod, ki_mod, ordered_mod, _, _) in IMPLS.items():
        kis = []
        for i in range(100_000):
            key = b"/registry/pods/default/pod-%06d" % i
            ki = ki_mod.KeyIndex(key)
            ki.put(kv_mod.KeyValue(key, i + 2, i + 2, 1, b"v", 0))
            if i % 10 == 0:
                ki.tombstone(kv_mod.KeyValue.tombstone(key, 200_000 + i))
            kis.append(ki)
        out[impl] = (ordered_mod.OrderedKeys(kis), kis)
    return out


@pytest.mark.benchmark(group="range read: a 10,000-key page of 100k keys")
@pytest.mark.parametrize("impl", ["cython", "python"])
def test_range_page(benchmark, indexes, impl):
    ordered, _ = indexes[impl]
    kvs, _ = benchmark(ordered.collect, b"/registry/pods/", b"/registry/pods0", 10**9, 10_000,
                       False, False)
    assert len(kvs) == 10_000


@pytest.mark.benchmark(group="snapshot: encode the records of 10,000 keys")
@pytest.mark.parametrize("impl", ["cython", "python"])
def test_snapshot_encode(benchmark, indexes, impl):
    _, kis = indexes[impl]
    codec = IMPLS[impl][4]
    assert len(benchmark(codec.encode_keys, kis[:10_000])) > 10_000 * 36


@pytest.mark.benchmark(group="history: append 10,000 revisions, compact half")
@pytest.mark.parametrize("impl", ["cython", "python"])
def test_history(benchmark, impl):
    kv_mod = IMPLS[impl][0]
    kv = kv_mod.KeyValue(b"k", 1, 1, 1, b"v", 0)
    History = compiled.History if impl == "cython" else py_history.History

    def run():
        h = History()
        for rev in range(1, 10_001):
            h.append(rev, (kv,))
        h.compact(5_000)
        return h
    assert len(benchmark(run)) == 5_001


@pytest.mark.benchmark(group="watch catch-up: one key's events in 1,000 revisions of 1,000 keys")
@pytest.mark.parametrize("impl", ["cython", "python", "before (Python loop over (rev, changes))"])
def test_history_catch_up(benchmark, impl):
    h = (py_history.History if impl == "python" else compiled.History)()
    for rev in range(1, 1_001):
        key = b"/registry/pods/default/pod-%04d" % (rev % 1000)
        h.append(rev, (compiled.KeyValue(key, rev, rev, 1, VALUE[:256], 0),))
    key = b"/registry/pods/default/pod-0007"

    def before():
        out = []
        for j in range(len(h)):
            for kv in h[j][1]:
                if kv.key == key and kv.version:
                    out.append(kv)
        return out

    run = before if impl.startswith("before") else (
        lambda: h.matching(0, 1_000, key, None, False, False, 1 << 20)[0])
    assert len(benchmark(run)) == 1


@pytest.mark.benchmark(group="request decode (protobuf's upb, for scale)")
@pytest.mark.parametrize("message", ["PutRequest 1 KB", "kube update TxnRequest"])
def test_request_decode(benchmark, message):
    key = b"/registry/pods/default/pod-000001"
    if message == "PutRequest 1 KB":
        cls, data = pb.PutRequest, pb.PutRequest(key=key, value=b"x" * 1024).SerializeToString()
    else:
        cls = pb.TxnRequest
        data = pb.TxnRequest(
            compare=[pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                                mod_revision=12345)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"x" * 1024))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))]).SerializeToString()
    assert benchmark(cls.FromString, data).ByteSize() == len(data)
