"""The MVCC key-value store: revisions, ranges at a revision, write transactions, compaction.

Deterministic and synchronous: the same sequence of calls always yields the same state.
It knows nothing of requests, logs or transports; etcd's mvcc package is the model.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import errors
from .index import TreeIndex
from .core import KeyValue, collect_visible


class RangeResult(NamedTuple):
    kvs: list[KeyValue]
    count: int
    rev: int  # the store revision the read was served at (the current one)


class MVCCStore:
    def __init__(self):
        self.index = TreeIndex()
        # etcd starts an empty store at revision 1, with nothing compacted (-1).
        self.current_rev = 1
        self.compact_rev = -1

    # -- reads ---------------------------------------------------------------------------------

    def check_read_rev(self, rev: int) -> int:
        """The revision a read at ``rev`` (<= 0: current) is served at, or etcd's error."""
        if rev > self.current_rev:
            raise errors.FutureRev()
        if rev <= 0:
            rev = self.current_rev
        if rev < self.compact_rev:
            raise errors.Compacted()
        return rev

    def range(self, key: bytes, end: bytes | None, rev: int = 0, limit: int = 0,
              count_only: bool = False) -> RangeResult:
        """Keys in [key, end) at ``rev``; ``count`` counts all of them, ``kvs`` up to ``limit``."""
        at = self.check_read_rev(rev)
        return self._range_at(key, end, at, limit, count_only)

    def _range_at(self, key, end, at, limit, count_only) -> RangeResult:
        kvs, count = collect_visible(self.index.scan(key, end), at, limit, count_only)
        return RangeResult(kvs, count, self.current_rev)

    def get(self, key: bytes, rev: int = 0) -> KeyValue | None:
        ki = self.index.get(key)
        if ki is None:
            return None
        return ki.get(rev if rev > 0 else self.current_rev)

    # -- writes --------------------------------------------------------------------------------

    def write(self) -> "WriteTxn":
        return WriteTxn(self)

    def compact(self, rev: int) -> None:
        """Forgets every revision that no read at or after ``rev`` can see."""
        if rev <= self.compact_rev:
            raise errors.Compacted()
        if rev > self.current_rev:
            raise errors.FutureRev()
        self.compact_rev = rev
        empty = [ki.key for ki in self.index.all() if ki.compact(rev)]
        for key in empty:
            self.index.remove(key)

    # -- snapshot ------------------------------------------------------------------------------

    def dump(self) -> dict:
        """The whole state as plain data (for msgpack)."""
        keys = []
        for ki in self.index.all():
            keys.append([ki.key, [[[kv.create_revision, kv.mod_revision, kv.version, kv.value,
                                    kv.lease] for kv in g] for g in ki.generations]])
        return {"current_rev": self.current_rev, "compact_rev": self.compact_rev, "keys": keys}

    @classmethod
    def load(cls, state: dict) -> "MVCCStore":
        store = cls()
        store.current_rev = state["current_rev"]
        store.compact_rev = state["compact_rev"]
        for key, gens in state["keys"]:
            ki = store.index.get_or_create(key)
            ki.generations = [[KeyValue(key, c, m, v, val, lease) for c, m, v, val, lease in g]
                              for g in gens]
        return store


class WriteTxn:
    """One main revision's worth of writes. Reads inside it see its own earlier writes.

    ``end()`` advances the store revision only if something changed, as etcd does.
    """

    __slots__ = ("store", "rev", "changes")

    def __init__(self, store: MVCCStore):
        self.store = store
        self.rev = store.current_rev + 1
        self.changes: list[KeyValue] = []

    @property
    def read_rev(self) -> int:
        return self.rev if self.changes else self.store.current_rev

    def range(self, key: bytes, end: bytes | None, rev: int = 0, limit: int = 0,
              count_only: bool = False) -> RangeResult:
        store = self.store
        read_rev = self.read_rev
        if rev > read_rev:
            raise errors.FutureRev()
        at = read_rev if rev <= 0 else rev
        if at < store.compact_rev:
            raise errors.Compacted()
        res = store._range_at(key, end, at, limit, count_only)
        return RangeResult(res.kvs, res.count, read_rev)

    def current(self, key: bytes) -> KeyValue | None:
        ki = self.store.index.get(key)
        return ki.current() if ki is not None else None

    def put(self, key: bytes, value: bytes, lease: int = 0) -> KeyValue:
        ki = self.store.index.get_or_create(key)
        prev = ki.current()
        if prev is None:
            kv = KeyValue(key, self.rev, self.rev, 1, value, lease)
        else:
            kv = KeyValue(key, prev.create_revision, self.rev, prev.version + 1, value, lease)
        ki.put(kv)
        self.changes.append(kv)
        return kv

    def delete_range(self, key: bytes, end: bytes | None) -> list[KeyValue]:
        """Deletes the live keys in [key, end); returns what they held before."""
        index = self.store.index
        deleted = [ki.current() for ki in index.scan(key, end) if ki.current() is not None]
        for prev in deleted:
            tomb = KeyValue.tombstone(prev.key, self.rev)
            index.get(prev.key).tombstone(tomb)
            self.changes.append(tomb)
        return deleted

    def end(self) -> list[KeyValue]:
        if self.changes:
            self.store.current_rev = self.rev
        return self.changes

    def abort(self) -> None:
        """Undoes this txn's writes, newest first, instead of ``end()``: the store is left as if
        the txn never ran (an op that fails half-way through a txn must not leave the others)."""
        index = self.store.index
        for kv in reversed(self.changes):
            ki = index.get(kv.key)
            gens = ki.generations
            if kv.version == 0:  # a tombstone closed a generation and opened an empty one
                gens.pop()
            gens[-1].pop()
            if ki.is_empty():  # the txn created the key
                index.remove(kv.key)
        self.changes = []
