"""Compiled hot paths against their pure-Python twins: same inputs, same outputs."""
import os
import random

import pytest

# The compiled module must be built (make test installs it); a missing build fails here rather
# than skipping. KVSTORE_NO_EXT only changes what kvstore selects, not what this test imports.
import kvstore._ext.mvcc_core as compiled
from kvstore.mvcc import history as py_history, key_index as py_ki, kv as py_kv

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess


def test_compiled_core_is_selected_unless_disabled():
    from kvstore.mvcc import COMPILED

    assert COMPILED == (os.environ.get("KVSTORE_NO_EXT", "") in ("", "0"))


def random_history(rng, impl_kv, impl_ki, n_ops):
    """The same random put/delete history of one key, built with one implementation."""
    ki = impl_ki.KeyIndex(b"k")
    rev, version, created = 1, 0, 0
    live = False
    for _ in range(n_ops):
        rev += rng.randint(1, 3)
        if live and rng.random() < 0.25:
            ki.tombstone(impl_kv.KeyValue.tombstone(b"k", rev))
            live, version = False, 0
        else:
            if not live:
                created, version, live = rev, 0, True
            version += 1
            ki.put(impl_kv.KeyValue(b"k", created, rev, version, b"v%d" % rev, rng.choice([0, 7])))
    return ki, rev


def as_tuples(kvs):
    return [None if kv is None else kv.as_tuple() for kv in kvs]


@pytest.mark.parametrize("seed", range(60))
def test_key_index_twins_agree(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    py, last = random_history(random.Random(seed), py_kv, py_ki, n)
    cy, _ = random_history(random.Random(seed), compiled, compiled, n)
    revs = range(0, last + 3)
    assert as_tuples(py.get(r) for r in revs) == as_tuples(cy.get(r) for r in revs)
    for r in revs:
        assert as_tuples(py.since(r)) == as_tuples(cy.since(r))
    assert as_tuples([py.current()]) == as_tuples([cy.current()])
    for at in sorted(rng.sample(list(revs), min(4, len(revs)))):
        assert py.compact(at) == cy.compact(at)
        assert [as_tuples(g) for g in py.generations] == [as_tuples(g) for g in cy.generations]
        assert as_tuples(py.get(r) for r in revs) == as_tuples(cy.get(r) for r in revs)
        assert py.is_empty() == cy.is_empty() and py.revision_count() == cy.revision_count()


@pytest.mark.parametrize("seed", range(20))
def test_collect_visible_twins_agree(seed):
    rng = random.Random(seed)
    plan = [(seed * 1000 + i, rng.randint(1, 10)) for i in range(rng.randint(0, 30))]
    pys = [random_history(random.Random(s), py_kv, py_ki, n)[0] for s, n in plan]
    cys = [random_history(random.Random(s), compiled, compiled, n)[0] for s, n in plan]
    last = max((k.revision_count() for k in pys), default=0) * 3 + 2
    for at in range(0, last + 2):
        for limit in (0, 1, 3):
            for count_only in (False, True):
                kvs_p, n_p = py_ki.collect_visible(pys, at, limit, count_only)
                kvs_c, n_c = compiled.collect_visible(cys, at, limit, count_only)
                assert (as_tuples(kvs_p), n_p) == (as_tuples(kvs_c), n_c)
                assert n_p == sum(1 for k in pys if k.get(at) is not None)
                expect = 0 if count_only else (n_p if limit <= 0 else min(limit, n_p))
                assert len(kvs_p) == expect


@pytest.mark.parametrize("seed", range(20))
def test_kept_revisions_and_encoded_records_twins_agree(seed):
    """What compaction kept (and still the newest at a later revision), and etcd's key bucket
    records of it: the same from both."""
    rng = random.Random(seed)
    plan = [(seed * 1000 + i, rng.randint(1, 10)) for i in range(rng.randint(0, 30))]
    pys = [random_history(random.Random(s), py_kv, py_ki, n)[0] for s, n in plan]
    cys = [random_history(random.Random(s), compiled, compiled, n)[0] for s, n in plan]
    last = max((k.revision_count() for k in pys), default=0) * 3 + 2
    subs = {(kv.mod_revision, kv.key): rng.randint(1, 5) for ki in pys for kv in ki.revisions
            if rng.random() < 0.3}
    for compact_rev in range(0, last + 1, 3):
        for upto in (compact_rev, compact_rev + 2, last):
            for as_hashed in (False, True):
                p = py_ki.kept_revisions(pys, compact_rev, upto, as_hashed, subs)
                c = compiled.kept_revisions(cys, compact_rev, upto, as_hashed, subs)
                assert [[(m, s, kv.as_tuple()) for m, s, kv in part] for part in p[:2]] == [
                    [(m, s, kv.as_tuple()) for m, s, kv in part] for part in c[:2]]
                assert p[2] == c[2]
                items_p, items_c = p[0], c[0]
                for max_bytes in (1, 100, 1 << 20):
                    i = j = 0
                    while i < len(items_p):
                        (data_p, i), (data_c, j) = (py_ki.encode_records(items_p, i, max_bytes),
                                                    compiled.encode_records(items_c, j, max_bytes))
                        assert (data_p, i) == (data_c, j)
    tombstones = [(9, 2, compiled.KeyValue.tombstone(b"k" * 200, 9))]
    assert compiled.encode_records(tombstones) == py_ki.encode_records(
        [(9, 2, py_kv.KeyValue.tombstone(b"k" * 200, 9))])


def random_key_indexes(seed, impl_kv, impl_ki, impl_history):
    """Several keys with random histories (one implementation), and the History they make,
    with the changes of a revision in key order."""
    rng = random.Random(seed)
    kis = []
    for i in range(rng.randint(0, 12)):
        ki, _ = random_history(random.Random(seed * 100 + i), impl_kv, impl_ki, rng.randint(0, 15))
        key = b"key-%d" % i + bytes(rng.randrange(256) for _ in range(rng.randint(0, 3)))
        kis.append(impl_ki.KeyIndex(key, [impl_kv.KeyValue(key, kv.create_revision, kv.mod_revision,
                                                           kv.version, kv.value, kv.lease)
                                          for kv in ki.revisions]))
    kis.sort(key=lambda k: k.key)
    by_rev = {}
    for ki in kis:
        for kv in ki.revisions:
            by_rev.setdefault(kv.mod_revision, []).append(kv)
    history = impl_history.History()
    for rev in sorted(by_rev):
        history.append(rev, tuple(by_rev[rev]))
    return kis, history


@pytest.mark.parametrize("seed", range(30))
def test_snapshot_codec_twins_agree(seed):
    from kvstore.mvcc import state_codec as py_codec

    py_kis, py_hist = random_key_indexes(seed, py_kv, py_ki, py_history)
    cy_kis, cy_hist = random_key_indexes(seed, compiled, compiled, compiled)
    keys = py_codec.encode_keys(py_kis)
    assert keys == compiled.encode_keys(cy_kis)
    history = py_codec.encode_history(py_hist)
    assert history == compiled.encode_history(cy_hist)
    n = len(py_hist)  # slices (a snapshot encodes it a slice per turn) concatenate to the whole
    cuts = sorted(random.Random(seed).sample(range(n + 1), min(3, n + 1)))
    bounds = list(zip([0, *cuts], [*cuts, n]))
    for codec, hist in ((py_codec, py_hist), (compiled, cy_hist)):
        assert b"".join(codec.encode_history(hist, a, b) for a, b in bounds) == history
        assert codec.encode_history(hist, n, n + 5) == b"" == codec.encode_history(hist, 2, 1)
    for codec in (py_codec, compiled):  # each decodes what both encode, to the same state
        kis = codec.decode_keys(keys)
        assert [(k.key, [as_tuples(g) for g in k.generations]) for k in kis] == \
               [(k.key, [as_tuples(g) for g in k.generations]) for k in py_kis]
        hist = codec.decode_history(history, {k.key: k for k in kis})
        assert [(rev, as_tuples(ch)) for rev, ch in hist] == \
               [(rev, as_tuples(ch)) for rev, ch in py_hist]
        found = {id(kv) for k in kis for g in k.generations for kv in g}
        assert all(id(kv) in found for _, ch in hist for kv in ch)  # the same objects
        if keys:
            with pytest.raises(ValueError, match="corrupt snapshot"):
                codec.decode_keys(keys[:-1])
        if history:
            with pytest.raises(ValueError, match="corrupt snapshot"):
                codec.decode_history(history[:-1], {k.key: k for k in kis})
            with pytest.raises(ValueError, match="corrupt snapshot"):
                codec.decode_history(history, {})
    for codec in (py_codec, compiled):  # decode_state: both at once, from views too
        for k, h in ((keys, history), (memoryview(keys), memoryview(history))):
            kis, hist = codec.decode_state(k, h)
            assert_decoded_state(kis, hist, py_kis, py_hist)
        if history:
            with pytest.raises(ValueError, match="corrupt snapshot: truncated record"):
                codec.decode_state(keys, history[:-1])
            if keys:
                with pytest.raises(ValueError) as py_err:
                    py_codec.decode_state(keys[:-1], history)
                with pytest.raises(ValueError) as c_err:
                    compiled.decode_state(keys[:-1], history)
                assert "corrupt snapshot" in str(c_err.value)
                assert "corrupt snapshot" in str(py_err.value)


def assert_decoded_state(kis, hist, want_kis, want_hist):
    """The decoded state is the one encoded, and each change of the history is the very
    KeyValue its key holds."""
    assert [(k.key, [as_tuples(g) for g in k.generations]) for k in kis] == \
           [(k.key, [as_tuples(g) for g in k.generations]) for k in want_kis]
    assert [(rev, as_tuples(ch)) for rev, ch in hist] == \
           [(rev, as_tuples(ch)) for rev, ch in want_hist]
    found = {id(kv) for k in kis for g in k.generations for kv in g}
    assert all(id(kv) in found for _, ch in hist for kv in ch)


def history_records(*revisions):
    """A history section: (revision, [key, ...]) records."""
    import struct

    out = b""
    for rev, keys in revisions:
        out += struct.pack("<qI", rev, len(keys))
        for key in keys:
            out += struct.pack("<I", len(key)) + key
    return out


@pytest.mark.parametrize("sparse", [False, True])
def test_decode_state_finds_changes_by_revision(sparse):
    """A revision of several changes (a txn), a revision of none, a key whose older revisions
    precede the history (compaction kept them), and revisions far apart (sparse: the
    compiled twin's table gives way to the dict): both twins decode the same state, and name
    a change the keys lack in the same words."""
    from kvstore.mvcc import state_codec as py_codec

    far = 10_000 if sparse else 0
    state = {b"a": [(2, 2, 1, b"a2"), (2, 5 + far, 2, b"a5")], b"b": [(5 + far, 5 + far, 1, b"b5")],
             b"c": [(3, 3, 1, b"c3"), (0, 6 + far, 0, b"")]}
    want_hist = [(3, [b"c"]), (4, []), (5 + far, [b"b", b"a"]), (6 + far, [b"c"])]
    for impl_kv, impl_ki, impl_codec in ((py_kv, py_ki, py_codec), (compiled, compiled, compiled)):
        kis = [impl_ki.KeyIndex(key, [impl_kv.KeyValue(key, c, m, v, val, 0) for c, m, v, val in revs])
               for key, revs in state.items()]
        keys = impl_codec.encode_keys(kis)
        history = history_records(*want_hist)
        for codec in (py_codec, compiled):
            got_kis, hist = codec.decode_state(keys, history)
            assert [k.key for k in got_kis] == [b"a", b"b", b"c"]
            assert [(rev, [(kv.key, kv.mod_revision) for kv in ch]) for rev, ch in hist] == \
                   [(rev, [(key, rev) for key in ch]) for rev, ch in want_hist]
            found = {id(kv) for k in got_kis for kv in k.revisions}
            assert all(id(kv) in found for _, ch in hist for kv in ch)
            for missing in ((5 + far, [b"b", b"zz"]), (7 + far, [b"a"]), (2 + far, [b"c"])):
                with pytest.raises(ValueError) as err:
                    codec.decode_state(keys, history + history_records(missing))
                rev, names = missing
                assert str(err.value) == (f"corrupt snapshot: history names revision {rev} of "
                                          f"key {names[-1]!r}, which the keys lack")


@pytest.mark.parametrize("seed", range(40))
def test_revisions_at_twins_agree(seed):
    n = random.Random(seed).randint(0, 30)
    py, last = random_history(random.Random(seed), py_kv, py_ki, n)
    cy, _ = random_history(random.Random(seed), compiled, compiled, n)
    for at in range(0, last + 2):
        expect = [kv for kv in py.revisions if kv.mod_revision <= at]
        assert as_tuples(py.revisions_at(at)) == as_tuples(expect)
        assert as_tuples(cy.revisions_at(at)) == as_tuples(expect)
        assert as_tuples([py.at(at)]) == as_tuples([cy.at(at)])
        assert py_codec_encode_keys([py], at) == compiled.encode_keys([cy], at)


def py_codec_encode_keys(kis, at):
    from kvstore.mvcc import state_codec

    return state_codec.encode_keys(kis, at)


@pytest.mark.parametrize("seed", range(40))
def test_key_index_pop_and_generations(seed):
    """pop() undoes appends; generations are the revisions cut after each tombstone."""
    n = random.Random(seed).randint(0, 30)
    for impl_kv, impl_ki in ((py_kv, py_ki), (compiled, compiled)):
        ki, _ = random_history(random.Random(seed), impl_kv, impl_ki, n)
        gens = ki.generations
        assert [kv for g in gens for kv in g] == ki.revisions
        assert all(g[-1].version == 0 for g in gens[:-1]) and not any(
            kv.version == 0 for kv in gens[-1])
        revs = ki.revisions
        while revs:
            assert ki.pop() is revs.pop()
            assert ki.revisions == revs and ki.revision_count() == len(revs)
        assert ki.is_empty() and ki.current() is None
        with pytest.raises(IndexError):
            ki.pop()


@pytest.mark.parametrize("seed", range(40))
def test_history_twins_agree(seed):
    """Random appends (one or several changes per revision) and compactions: both Histories
    hold the same revisions, and a compaction keeps only the puts at its own revision."""
    rng = random.Random(seed)
    hists = [py_history.History(), compiled.History()]
    kvs = {}
    rev = 1
    for _step in range(rng.randint(0, 400)):
        if rng.random() < 0.05 and rev > 1:
            at = rng.randint(1, rev)
            for h in hists:
                h.compact(at)
            continue
        rev += rng.randint(1, 3)
        changes = []
        for i in range(rng.choice([1, 1, 1, 2, 3])):
            kv = (compiled.KeyValue.tombstone(b"k%d" % i, rev) if rng.random() < 0.3 else
                  compiled.KeyValue(b"k%d" % i, rev, rev, 1, b"v", 0))
            changes.append(kv)
        kvs[rev] = tuple(changes)
        for h in hists:
            h.append(rev, tuple(changes))
    py, cy = hists
    assert list(py) == list(cy)
    assert len(py) == len(cy)
    for i in range(-len(py), len(py)):
        assert py[i] == cy[i]
    for r in range(0, rev + 2):
        assert py.index_from(r) == cy.index_from(r)
    for r, changes in py:  # what was appended, minus tombstones at a compaction point
        assert set(changes) <= set(kvs[r]) and changes
    with pytest.raises(IndexError):
        cy[len(cy)]


@pytest.mark.parametrize("seed", range(40))
def test_history_matching_twins_agree_with_a_plain_filter(seed):
    """A watcher's catch-up (History.matching): both Histories pick, from random revisions of
    puts and deletes with values of random sizes, what a plain filter over (rev, changes)
    picks for a random key, range or open range, filters, window and byte budget; and stop at
    the same revision."""
    rng = random.Random(seed)
    hists = [py_history.History(), compiled.History()]
    rows = []
    rev = 1
    for _ in range(rng.randint(0, 300)):
        rev += rng.randint(1, 2)
        changes = []
        for key in rng.sample([b"a", b"b", b"b/1", b"b/2", b"c", b"\xff"], rng.choice([1, 1, 2, 3])):
            changes.append(compiled.KeyValue.tombstone(key, rev) if rng.random() < 0.3 else
                           compiled.KeyValue(key, rev, rev, 1, b"v" * rng.choice([0, 1, 50, 3000]), 0))
        rows.append((rev, tuple(changes)))
        for h in hists:
            h.append(rev, tuple(changes))
    for _ in range(20):
        key = rng.choice([b"a", b"b", b"b/", b"c", b"\x00"])
        end = rng.choice([None, b"", b"b0", b"c", b"\xff\xff"])
        no_put, no_delete = rng.random() < 0.2, rng.random() < 0.2
        i = rng.randint(-2, len(rows) + 2)
        stop = i + rng.randint(0, 400)
        budget = rng.choice([1, 100, 5000, 1 << 20])
        expected, j, size = [], max(i, 0), 0
        while j < min(stop, len(rows)) and size < budget:
            for kv in rows[j][1]:
                covered = kv.key == key if end is None else kv.key >= key and (end == b"" or kv.key < end)
                if covered and not (no_delete if kv.version == 0 else no_put):
                    expected.append(kv)
                    size += len(kv.key) + len(kv.value)
            j += 1
        for h in hists:
            assert h.matching(i, stop, key, end, no_put, no_delete, budget) == (expected, j)


@pytest.mark.parametrize("seed", range(8))
def test_ordered_keys_twins_agree(seed):
    """Random adds and removes over thousands of keys (many chunk splits and empties), then
    every query: both OrderedKeys answer the same, and as a sorted list of the keys would."""
    from kvstore.mvcc import ordered_keys as py_ok

    rng = random.Random(seed)
    py, cy = py_ok.OrderedKeys(), compiled.OrderedKeys()
    held: dict[bytes, tuple] = {}
    names = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 6))) for _ in range(6000)]
    for step in range(9000):
        key = rng.choice(names)
        if key in held and rng.random() < 0.4:
            assert py.remove(key) and cy.remove(key)
            del held[key]
        elif key not in held:
            rev = step + 1
            pair = []
            deleted = rng.random() < 0.2
            for impl_kv, impl_ki in ((py_kv, py_ki), (compiled, compiled)):
                ki = impl_ki.KeyIndex(key)
                ki.put(impl_kv.KeyValue(key, rev, rev, 1, b"v", 0))
                if deleted:
                    ki.tombstone(impl_kv.KeyValue.tombstone(key, rev + 1))
                pair.append(ki)
            py.add(pair[0])
            cy.add(pair[1])
            held[key] = tuple(pair)
        else:
            assert not py.remove(key + b"\xff\xff\xff") and not cy.remove(key + b"\xff\xff\xff")
    order = sorted(held)
    assert len(py) == len(cy) == len(order)
    # built at once from key order (a snapshot's: appended chunk by chunk), or from any order
    for given in ([held[k][1] for k in order], [held[k][1] for k in reversed(order)]):
        rebuilt = compiled.OrderedKeys(given)
        assert [ki.key for ki in rebuilt] == order and len(rebuilt) == len(order)
        assert all(rebuilt.rank(order[i]) == i for i in range(0, len(order), 97))
    assert [ki.key for ki in py] == [ki.key for ki in cy] == order
    for _ in range(300):
        key, end = rng.choice(names), rng.choice(names + [b""])
        assert py.rank(key) == cy.rank(key) == sum(1 for k in order if k < key)
        assert (key in py) == (key in cy) == (key in held)
        expect = [k for k in order if k >= key and (end == b"" or k < end)]
        assert py.count(key, end) == cy.count(key, end) == len(expect)
        assert [ki.key for ki in py.scan(key, end)] == [ki.key for ki in cy.scan(key, end)] == expect
        n = rng.randint(0, 50)
        assert py.keys_from(key, n) == cy.keys_from(key, n) == [k for k in order if k >= key][:n]
        at = rng.randint(0, 9001)
        for limit, count_only, full in ((0, False, True), (3, False, True), (0, True, True),
                                        (5, False, False)):
            kp, np_ = py.collect(key, end, at, limit, count_only, full)
            kc, nc = cy.collect(key, end, at, limit, count_only, full)
            assert (as_tuples(kp), np_) == (as_tuples(kc), nc)
            want, want_n = py_ki.collect_visible([held[k][0] for k in expect], at, limit,
                                                 count_only, full)
            assert (as_tuples(kp), np_) == (as_tuples(want), want_n)


@pytest.mark.parametrize("seed", range(20))
def test_deleted_twins_agree(seed):
    """deleted(): the key indexes whose newest revision is a tombstone, or that hold none (the
    index of deleted keys a snapshot's load builds)."""
    py_kis, _ = random_key_indexes(seed, py_kv, py_ki, py_history)
    cy_kis, _ = random_key_indexes(seed, compiled, compiled, compiled)
    py_kis.append(py_ki.KeyIndex(b"zz-empty"))
    cy_kis.append(compiled.KeyIndex(b"zz-empty"))
    want = [ki.key for ki in py_kis if not ki.revisions or ki.revisions[-1].version == 0]
    assert [ki.key for ki in py_ki.deleted(py_kis)] == want
    assert [ki.key for ki in compiled.deleted(cy_kis)] == want
    assert all(a is b for a, b in zip(compiled.deleted(cy_kis),
                                      (ki for ki in cy_kis if ki.current() is None), strict=True))


class _Sink:
    """A sink as deliver_change sees one: its queue, closed, woken, wake()."""

    def __init__(self, rng):
        self.queue = [b"queued"] * rng.randint(0, 6)
        self.closed = rng.random() < 0.15
        self.woken = rng.random() < 0.3
        self.wakes = 0

    def wake(self):
        self.woken = True
        self.wakes += 1


def _deliver_scenario(seed, impl_kv, watcher_class, deliver_change):
    """One change to random watchers (filters, min_rev, prev_kv) over random sinks (closed,
    full, woken): what every sink, watcher and the call end up with."""
    rng = random.Random(seed)
    sinks = [_Sink(rng) for _ in range(rng.randint(1, 5))]
    watchers = [watcher_class(i, b"k", None, rng.randint(0, 12), rng.choice(sinks),
                              no_put=rng.random() < 0.2, no_delete=rng.random() < 0.2,
                              prev_kv=rng.random() < 0.5) for i in range(rng.randint(0, 14))]
    rev = 10
    kv = (impl_kv.KeyValue.tombstone(b"k", rev) if rng.random() < 0.3
          else impl_kv.KeyValue(b"k", 3, rev, 4, b"value %d" % seed, rng.choice([0, 9])))
    prev = impl_kv.KeyValue(b"k", 3, 7, 3, b"old", 0) if rng.random() < 0.7 else None
    header = b"\x08\x01\x18\x0a"
    behind = deliver_change(watchers, rev, kv, prev, header, 5)
    return ([s.queue for s in sinks], [s.wakes for s in sinks],
            [(w.min_rev, w.sent) for w in watchers], None if behind is None else [w.id for w in behind])


@pytest.mark.parametrize("seed", range(80))
def test_deliver_change_twins_agree(seed):
    from kvstore.mvcc import watch_fanout as py_fanout

    py = _deliver_scenario(seed, py_kv, py_fanout.Watcher, py_fanout.deliver_change)
    cy = _deliver_scenario(seed, compiled, compiled.Watcher, compiled.deliver_change)
    assert py == cy
    queues, wakes, states, behind = py
    # each sink that got a response was woken once, unless it was woken already
    assert all(n <= 1 for n in wakes)


def test_deliver_change_encodes_what_a_watch_response_says():
    from kvstore.api import rpc_pb2 as pb
    from kvstore.mvcc import watch_fanout as py_fanout

    for impl_kv, Watcher, deliver in ((py_kv, py_fanout.Watcher, py_fanout.deliver_change),
                                      (compiled, compiled.Watcher, compiled.deliver_change)):
        rng = random.Random(0)
        full, plain, with_prev = _Sink(rng), _Sink(rng), _Sink(rng)
        full.queue, full.closed = [b"q"] * 3, False
        plain.queue, plain.closed, with_prev.queue, with_prev.closed = [], False, [], False
        ws = [Watcher(7, b"k", None, 0, plain), Watcher(8, b"k", None, 0, with_prev, prev_kv=True),
              Watcher(9, b"k", None, 0, full), Watcher(10, b"k", None, 11, plain)]
        kv = impl_kv.KeyValue(b"k", 3, 10, 4, b"new", 0)
        prev = impl_kv.KeyValue(b"k", 3, 7, 3, b"old", 0)
        header = pb.ResponseHeader(revision=10).SerializeToString()
        behind = deliver(ws, 10, kv, prev, header, 3)
        assert [w.id for w in behind] == [9]  # its queue was full
        (a,), (b,) = plain.queue, with_prev.queue  # watcher 10 starts at revision 11
        ra, rb = pb.WatchResponse.FromString(a), pb.WatchResponse.FromString(b)
        assert (ra.watch_id, ra.header.revision, rb.watch_id) == (7, 10, 8)
        assert [(e.kv.value, e.HasField("prev_kv")) for e in ra.events] == [(b"new", False)]
        assert [(e.kv.value, e.prev_kv.value) for e in rb.events] == [(b"new", b"old")]
        assert [(w.min_rev, w.sent) for w in ws] == [(11, True), (11, True), (0, False), (11, False)]


@pytest.mark.parametrize("end", [None, b"", b"m"])
def test_watcher_twins_agree(end):
    from kvstore.mvcc import watch_fanout as py_fanout

    for key in (b"", b"a", b"k", b"k\x00", b"l", b"m", b"z"):
        py = py_fanout.Watcher(1, b"k", end, 0, None, no_delete=True)
        cy = compiled.Watcher(1, b"k", end, 0, None, no_delete=True)
        assert py.covers(key) == cy.covers(key)
    for impl_kv, W in ((py_kv, py_fanout.Watcher), (compiled, compiled.Watcher)):
        w = W(1, b"k", end, 0, None, no_delete=True)
        assert w.wants(impl_kv.KeyValue(b"k", 1, 2, 1, b"v", 0))
        assert not w.wants(impl_kv.KeyValue.tombstone(b"k", 3))
