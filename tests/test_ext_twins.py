"""Compiled hot paths against their pure-Python twins: same inputs, same outputs."""
import os
import random

import pytest

from kvstore.mvcc import key_index as py_ki, kv as py_kv

# The compiled module must be built (make test installs it); a missing build fails here rather
# than skipping. KVSTORE_NO_EXT only changes what kvstore selects, not what this test imports.
import kvstore._ext.mvcc_core as compiled


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


def random_key_indexes(seed, impl_kv, impl_ki):
    """Several keys with random histories (one implementation), and the history they make:
    [(rev, (KeyValue, ...))] with the changes of a revision in key order."""
    rng = random.Random(seed)
    kis = []
    for i in range(rng.randint(0, 12)):
        ki, _ = random_history(random.Random(seed * 100 + i), impl_kv, impl_ki, rng.randint(0, 15))
        key = b"key-%d" % i + bytes(rng.randrange(256) for _ in range(rng.randint(0, 3)))
        renamed = impl_ki.KeyIndex(key)
        renamed.generations = [[impl_kv.KeyValue(key, kv.create_revision, kv.mod_revision,
                                                 kv.version, kv.value, kv.lease) for kv in g]
                               for g in ki.generations]
        kis.append(renamed)
    kis.sort(key=lambda k: k.key)
    by_rev = {}
    for ki in kis:
        for g in ki.generations:
            for kv in g:
                by_rev.setdefault(kv.mod_revision, []).append(kv)
    return kis, [(rev, tuple(by_rev[rev])) for rev in sorted(by_rev)]


@pytest.mark.parametrize("seed", range(30))
def test_snapshot_codec_twins_agree(seed):
    from kvstore.mvcc import state_codec as py_codec

    py_kis, py_hist = random_key_indexes(seed, py_kv, py_ki)
    cy_kis, cy_hist = random_key_indexes(seed, compiled, compiled)
    keys = py_codec.encode_keys(py_kis)
    assert keys == compiled.encode_keys(cy_kis)
    history = py_codec.encode_history(py_hist)
    assert history == compiled.encode_history(cy_hist)
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


@pytest.mark.parametrize("seed", range(40))
def test_generations_at_twins_agree(seed):
    from kvstore.mvcc import state_codec as py_codec

    n = random.Random(seed).randint(0, 30)
    py, last = random_history(random.Random(seed), py_kv, py_ki, n)
    cy, _ = random_history(random.Random(seed), compiled, compiled, n)
    for at in range(0, last + 2):
        expect = py_codec.generations_at(py.generations, at)
        assert [as_tuples(g) for g in compiled.generations_at(cy.generations, at)] == \
               [as_tuples(g) for g in expect]
        assert py_codec.encode_keys([py], at) == compiled.encode_keys([cy], at)
