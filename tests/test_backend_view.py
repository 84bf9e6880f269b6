"""The MVCC state as etcd's key bucket holds it (backend_view.py) and HashKV over it (hash.py),
against a model: every record ever written, kept or dropped by etcd's rules, written out here
independently of kvstore's key indexes and history. Random histories of puts, Txns of several
writes, multi-key deletes and compactions; on the compiled core and on its pure twin."""
from __future__ import annotations

import random

import pytest
from crc32c import crc32c

from kvstore.mvcc import MVCCStore
from kvstore.mvcc.backend_view import (
    backend_revisions,
    backend_value,
    mvcc_from_revisions,
    parse_revision_key,
    revision_key,
)
from kvstore.mvcc.hash import hash_kv_steps, run_steps

pytestmark = pytest.mark.inprocess


class Model:
    """Every record (main, sub, key, is_put, encoded) in write order, and the compactions."""

    def __init__(self):
        self.records: list[tuple[int, int, bytes, bool, bytes]] = []
        self.compact_rev = -1

    def bucket(self, at: int | None = None) -> list:
        """The key bucket after the compactions: for revisions at or before the last one,
        each key's newest, if a put (what etcd's compaction keeps)."""
        c = self.compact_rev
        newest: dict[bytes, tuple] = {}
        for r in self.records:
            if r[0] <= c:
                newest[r[2]] = r
        kept = {r for r in newest.values() if r[3]}
        return [r for r in self.records if r[0] > c or r in kept]

    def hashed(self, rev: int) -> list:
        """What etcd 3.4's HashKV reads at rev: of the records at or before the compaction,
        those its index keeps at rev (each key's newest by rev, if a put), or all of them
        when no key is live at rev."""
        c = self.compact_rev
        bucket = [r for r in self.bucket() if r[0] <= rev]
        newest: dict[bytes, tuple] = {}
        for r in self.records:
            if r[0] <= rev:
                newest[r[2]] = r
        keep = {r for r in newest.values() if r[3]}
        return [r for r in bucket if r[0] > c or not keep or r in keep]


def crc(records) -> int:
    h = crc32c(b"key")
    for main, sub, key, is_put, encoded in records:
        h = crc32c(revision_key(main, sub, not is_put), h)
        h = crc32c(encoded if is_put else b"\x0a" + bytes([len(key)]) + key, h)
    return h


def random_history(seed: int):
    rng = random.Random(seed)
    mvcc, model = MVCCStore(), Model()
    keys = [b"k%d" % i for i in range(12)]
    for _ in range(rng.randrange(30, 120)):
        roll = rng.random()
        txn = mvcc.write()
        if roll < 0.85:  # one to four writes to distinct keys in one revision
            chosen = rng.sample(keys, rng.randrange(1, 5))
            for key in chosen:
                if rng.random() < 0.2 and txn.current(key) is not None:
                    txn.delete_range(key, None)
                else:
                    txn.put(key, b"v%d" % rng.randrange(1000), lease=rng.choice((0, 0, 7)))
        else:  # a range delete of several keys
            lo = rng.choice(keys)
            txn.delete_range(lo, lo[:-1] + bytes([lo[-1] + 3]))
        changes = txn.end()
        for sub, kv in enumerate(changes):
            model.records.append((kv.mod_revision, sub, kv.key, bool(kv.version), kv.encoded))
        if rng.random() < 0.08 and mvcc.current_rev > 2:
            at = rng.randrange(max(mvcc.compact_rev + 1, 2), mvcc.current_rev + 1)
            if at > mvcc.compact_rev:
                mvcc.compact(at)
                model.compact_rev = at
    return mvcc, model


@pytest.mark.parametrize("seed", range(40))
def test_records_and_hash_match_the_model(seed):
    mvcc, model = random_history(seed)
    got = [(m, s, kv.key, bool(kv.version), backend_value(kv) if not kv.version else kv.encoded)
           for m, s, kv in backend_revisions(mvcc)]
    want = [(m, s, k, p, e if p else backend_value_of_tombstone(k)) for m, s, k, p, e in model.bucket()]
    assert got == want
    for rev in {mvcc.current_rev, max(mvcc.compact_rev + 1, 1), (mvcc.current_rev + mvcc.compact_rev) // 2}:
        if rev > mvcc.compact_rev:
            assert run_steps(hash_kv_steps(mvcc, rev)) == crc(model.hashed(rev)), f"at {rev}"
    assert mvcc.size == mvcc.measure_size()


def backend_value_of_tombstone(key: bytes) -> bytes:
    return b"\x0a" + bytes([len(key)]) + key


@pytest.mark.parametrize("seed", range(20))
def test_the_state_comes_back_from_its_records(seed):
    """mvcc_from_revisions (an etcd snapshot's key bucket loaded) gives back a state with the
    same records, reads, hash, size, and the same again after it is dumped and loaded."""
    mvcc, model = random_history(seed)
    items = list(backend_revisions(mvcc))
    back = mvcc_from_revisions(items, mvcc.current_rev, mvcc.compact_rev)
    assert [(m, s, kv.as_tuple()) for m, s, kv in backend_revisions(back)] == [
        (m, s, kv.as_tuple()) for m, s, kv in items]
    assert run_steps(hash_kv_steps(back, 0)) == run_steps(hash_kv_steps(mvcc, 0)) == crc(
        model.hashed(mvcc.current_rev))
    assert back.size == mvcc.size
    for rev in range(max(mvcc.compact_rev, 1), mvcc.current_rev + 1):
        assert ([kv.as_tuple() for kv in back.range(b"\0", b"\xff", rev).kvs]
                == [kv.as_tuple() for kv in mvcc.range(b"\0", b"\xff", rev).kvs])
    again = MVCCStore.load(back.dump())
    assert run_steps(hash_kv_steps(again, mvcc.current_rev)) == run_steps(hash_kv_steps(mvcc, 0))
    assert again.kept_subs == back.kept_subs


def test_revision_keys():
    assert revision_key(5, 2) == bytes.fromhex("0000000000000005") + b"_" + bytes.fromhex("0000000000000002")
    assert revision_key(5, 2, tombstone=True).endswith(b"t")
    assert parse_revision_key(revision_key(1 << 40, 3, True)) == (1 << 40, 3, True)
    for bad in (b"", b"x" * 17, revision_key(1, 1) + b"x"):
        with pytest.raises(ValueError):
            parse_revision_key(bad)


def test_records_out_of_order_are_refused():
    from kvstore.mvcc.core import KeyValue
    kv = KeyValue(b"a", 2, 2, 1, b"v", 0)
    with pytest.raises(ValueError, match="out of order"):
        mvcc_from_revisions([(2, 0, kv), (2, 0, kv)], 2, -1)
