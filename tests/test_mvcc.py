"""MVCC semantics of the in-memory store, in process (etcd's kvstore_test / key_index_test)."""
import msgpack
import pytest

from kvstore import errors
from kvstore.mvcc import KeyValue, MVCCStore

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess


def put(s, key, value=b"v", lease=0):
    t = s.write()
    kv = t.put(key, value, lease)
    t.end()
    return kv


def delete(s, key, end=None):
    t = s.write()
    d = t.delete_range(key, end)
    t.end()
    return d


def keys(res):
    return [kv.key for kv in res.kvs]


def test_empty_store_is_at_revision_one():
    s = MVCCStore()
    assert s.current_rev == 1
    r = s.range(b"a", b"")
    assert r.kvs == [] and r.count == 0 and r.rev == 1


def test_put_sets_create_mod_version():
    s = MVCCStore()
    a1 = put(s, b"a", b"1")
    a2 = put(s, b"a", b"2")
    assert (a1.create_revision, a1.mod_revision, a1.version) == (2, 2, 1)
    assert (a2.create_revision, a2.mod_revision, a2.version) == (2, 3, 2)
    assert s.current_rev == 3


def test_historical_reads_after_overwrites_and_deletes():
    s = MVCCStore()
    put(s, b"k", b"1")       # rev 2
    put(s, b"k", b"2")       # rev 3
    delete(s, b"k")          # rev 4
    put(s, b"k", b"3")       # rev 5: a new generation
    assert s.range(b"k", None, rev=1).kvs == []
    assert s.range(b"k", None, rev=2).kvs[0].value == b"1"
    assert s.range(b"k", None, rev=3).kvs[0].value == b"2"
    assert s.range(b"k", None, rev=4).kvs == []
    kv = s.range(b"k", None, rev=5).kvs[0]
    assert (kv.value, kv.create_revision, kv.version) == (b"3", 5, 1)


def test_delete_range_is_one_revision_with_tombstones():
    s = MVCCStore()
    for k in (b"a", b"b", b"c"):
        put(s, k)
    deleted = delete(s, b"a", b"c")
    assert [kv.key for kv in deleted] == [b"a", b"b"]
    assert s.current_rev == 5
    assert keys(s.range(b"a", b"")) == [b"c"]
    assert keys(s.range(b"a", b"", rev=4)) == [b"a", b"b", b"c"]


def test_delete_of_nothing_does_not_advance_revision():
    s = MVCCStore()
    put(s, b"a")
    assert delete(s, b"zz") == []
    assert s.current_rev == 2


def test_range_limit_counts_all():
    s = MVCCStore()
    for i in range(10):
        put(s, b"k%d" % i)
    r = s.range(b"k", b"l", limit=3)
    assert keys(r) == [b"k0", b"k1", b"k2"] and r.count == 10
    r = s.range(b"k", b"l", count_only=True)
    assert r.kvs == [] and r.count == 10


def test_range_end_conventions():
    s = MVCCStore()
    for k in (b"a", b"ab", b"b", b"c"):
        put(s, k)
    assert keys(s.range(b"ab", None)) == [b"ab"]          # single key
    assert keys(s.range(b"ab", b"")) == [b"ab", b"b", b"c"]  # "\0": all keys >= key
    assert keys(s.range(b"a", b"b")) == [b"a", b"ab"]
    assert keys(s.range(b"c", b"a")) == []                # end before key


def test_future_and_compacted_revisions():
    s = MVCCStore()
    put(s, b"a")
    put(s, b"a")
    with pytest.raises(errors.FutureRev):
        s.range(b"a", None, rev=4)
    s.compact(2)
    with pytest.raises(errors.Compacted):
        s.range(b"a", None, rev=1)
    assert s.range(b"a", None, rev=2).kvs[0].mod_revision == 2  # the compact rev itself is readable
    with pytest.raises(errors.Compacted):
        s.compact(2)
    with pytest.raises(errors.FutureRev):
        s.compact(10)


def test_compaction_keeps_what_later_reads_see():
    s = MVCCStore()
    put(s, b"a", b"1")   # 2
    put(s, b"a", b"2")   # 3
    put(s, b"b", b"1")   # 4
    delete(s, b"b")      # 5
    put(s, b"a", b"3")   # 6
    s.compact(4)
    assert s.range(b"a", None, rev=4).kvs[0].value == b"2"
    assert s.range(b"b", None, rev=4).kvs[0].value == b"1"
    assert s.range(b"b", None, rev=5).kvs == []
    ki = s.index.get(b"a")
    assert [kv.mod_revision for kv in ki.generations[0]] == [3, 6]


def test_compaction_removes_deleted_keys():
    s = MVCCStore()
    put(s, b"a")         # 2
    delete(s, b"a")      # 3
    put(s, b"b")         # 4
    s.compact(3)
    assert s.index.get(b"a") is None
    assert len(s.index) == 1


def test_compaction_at_tombstone_keeps_newer_generation():
    s = MVCCStore()
    put(s, b"a", b"1")   # 2
    delete(s, b"a")      # 3
    put(s, b"a", b"2")   # 4
    s.compact(3)
    ki = s.index.get(b"a")
    assert [[kv.mod_revision for kv in g] for g in ki.generations] == [[4]]
    assert s.range(b"a", None, rev=3).kvs == []
    kv = s.range(b"a", None).kvs[0]
    assert (kv.value, kv.version, kv.create_revision) == (b"2", 1, 4)


def test_write_txn_reads_its_own_writes_in_one_revision():
    s = MVCCStore()
    t = s.write()
    t.put(b"a", b"1", 0)
    t.put(b"b", b"1", 0)
    assert [kv.key for kv in t.range(b"a", b"").kvs] == [b"a", b"b"]
    assert t.delete_range(b"a", None)[0].value == b"1"
    changes = t.end()
    assert [(c.key, c.is_tombstone) for c in changes] == [(b"a", False), (b"b", False), (b"a", True)]
    assert s.current_rev == 2
    assert keys(s.range(b"a", b"")) == [b"b"]


def test_key_index_since_includes_tombstones():
    s = MVCCStore()
    put(s, b"a")         # 2
    delete(s, b"a")      # 3
    put(s, b"a")         # 4
    revs = [(kv.mod_revision, kv.is_tombstone) for kv in s.index.get(b"a").since(3)]
    assert revs == [(3, True), (4, False)]


def test_dump_and_load_round_trip():
    s = MVCCStore()
    put(s, b"a", b"1", lease=7)
    put(s, b"a", b"2")
    delete(s, b"a")
    put(s, b"b", b"x")
    s.compact(3)
    txn = s.write()  # one revision, two changes: their order (b before a) must survive
    txn.put(b"b", b"y")
    txn.put(b"a", b"z")
    txn.end()
    t = MVCCStore.load(msgpack.unpackb(msgpack.packb(s.dump(), use_bin_type=True), raw=False))
    assert (t.current_rev, t.compact_rev) == (s.current_rev, s.compact_rev)
    for rev in range(3, s.current_rev + 1):
        assert s.range(b"a", b"", rev=rev).kvs == t.range(b"a", b"", rev=rev).kvs
    assert [(k.key, k.generations) for k in t.index.all()] == \
           [(k.key, k.generations) for k in s.index.all()]
    assert list(t.history) == list(s.history)
    assert [kv.key for kv in t.history[-1][1]] == [b"b", b"a"]


def test_load_refuses_an_unknown_snapshot_format():
    with pytest.raises(ValueError, match="snapshot format"):
        MVCCStore.load({"current_rev": 1, "compact_rev": -1, "keys": [], "history": []})


def test_tombstone_shape_matches_etcd_delete_event():
    tomb = KeyValue.tombstone(b"k", 9)
    assert tomb.as_tuple() == (b"k", 0, 9, 0, b"", 0) and tomb.is_tombstone


@pytest.mark.parametrize("seed", range(25))
def test_paged_counts_by_rank_match_a_full_scan(seed):
    """A limited range at the newest revision counts by rank (live keys minus deleted ones)
    and stops at its limit; its count and keys must equal a full scan's, through puts,
    deletes, undone txns, compactions and reads at older revisions."""
    import random

    from kvstore.mvcc.core import collect_visible

    rng = random.Random(seed)
    s = MVCCStore()
    names = [b"k%02d" % i for i in range(30)]

    def expect(key, end, at, limit):
        kvs, count = collect_visible(s.index.scan(key, end), at, 0, False)
        return [kv.key for kv in kvs[:limit] if limit] or [kv.key for kv in kvs], count

    for _step in range(200):
        op = rng.random()
        if op < 0.5:
            put(s, rng.choice(names))
        elif op < 0.7:
            a = rng.choice(names)
            delete(s, a, rng.choice([None, a + b"\xff", b""]))
        elif op < 0.8:
            txn = s.write()  # a txn undone half-way: the deleted set must be restored too
            txn.put(rng.choice(names), b"x")
            txn.delete_range(rng.choice(names), b"")
            txn.put(rng.choice(names), b"y")
            txn.abort()
        elif op < 0.85 and s.current_rev > 2:
            try:
                s.compact(rng.randint(max(s.compact_rev, 1), s.current_rev))
            except errors.Compacted:
                pass
        for _ in range(3):
            key = rng.choice(names)
            end = rng.choice([None, b"", key + b"\xff", rng.choice(names)])
            at = rng.choice([s.current_rev, rng.randint(max(s.compact_rev, 1), s.current_rev)])
            limit = rng.choice([1, 2, 5, 100])
            want_keys, want_count = expect(key, end, at, limit)
            got = s.range(key, end, rev=at, limit=limit)
            assert got.count == want_count
            assert [kv.key for kv in got.kvs] == want_keys[:limit]
            assert s.range(key, end, rev=at, count_only=True).count == want_count
            assert s.first(key, end, at, limit) == [kv for kv in got.kvs]


@pytest.mark.parametrize("seed", range(15))
def test_compaction_in_slices_ends_where_one_pass_does(seed):
    """start_compaction + compact_step in slices, with writes and a newer compaction landing
    between slices, leaves the same key indexes as compacting in one pass, and reads at or
    after the compaction revision see the same thing at every point."""
    import random

    rng = random.Random(seed)
    names = [b"k%02d" % i for i in range(40)]

    def workload(stores, n):
        for _ in range(n):
            key = rng.choice(names)
            if rng.random() < 0.7:
                for s in stores:
                    put(s, key, b"v%d" % s.current_rev)
            else:
                for s in stores:
                    delete(s, key)

    sliced, whole = MVCCStore(), MVCCStore()
    workload([sliced, whole], 150)
    at = sliced.current_rev - rng.randint(0, 40)
    sliced.start_compaction(at)
    whole.compact(at)
    assert sliced.compacting
    steps = 0
    while sliced.compact_step(rng.randint(1, 6)):
        steps += 1
        for rev in range(at, sliced.current_rev + 1):
            assert sliced.range(b"", b"", rev=rev).kvs == whole.range(b"", b"", rev=rev).kvs
        if steps == 2:
            workload([sliced, whole], 10)  # writes land between slices
        if steps == 4:
            at = sliced.current_rev - 3  # a newer compaction restarts the keys
            sliced.start_compaction(at)
            whole.compact(at)
    assert not sliced.compacting and steps > 4
    assert [(k.key, k.revisions) for k in sliced.index.all()] == \
           [(k.key, k.revisions) for k in whole.index.all()]
    assert list(sliced.history) == list(whole.history)
    with pytest.raises(errors.Compacted):
        sliced.range(b"", b"", rev=at - 1)
