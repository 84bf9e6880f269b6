"""The MVCC key-value store: revisions, ranges at a revision, write transactions, compaction.

Deterministic and synchronous: the same sequence of calls always yields the same state.
It knows nothing of requests, logs or transports; etcd's mvcc package is the model.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .. import errors
from .core import History, KeyValue, codec
from .index import TreeIndex

SNAPSHOT_FORMAT = 4  # 1: nested lists; 2: generations; 3: envelope first
REVISION_KEY_BYTES = 17  # what etcd's backend keys a revision's record by (backend_view.py)


class RangeResult(NamedTuple):
    kvs: list[KeyValue]
    count: int  # type: ignore[assignment]  # etcd's name; shadows tuple.count, which no one calls
    rev: int  # the store revision the read was served at (the current one)


# Called after every write revision with (rev, changes, prevs): changes in the order they
# were made (etcd's sub-revision order), prevs[i] the live KeyValue changes[i] replaced or None.
CommitObserver = Callable[[int, list, list], None]


class MVCCStore:
    def __init__(self):
        self.index = TreeIndex()
        # etcd starts an empty store at revision 1, with nothing compacted (-1).
        self.current_rev = 1
        self.compact_rev = -1
        # The changes of every revision since the compaction point (history.py).
        self.history = History()
        self.observers: list[CommitObserver] = []
        self._compact_from: bytes | None = None  # the next key to compact; None when done
        # (revision, key) -> sub-revision, for what compaction kept of revisions the history
        # no longer holds, where the sub-revision is not 0 (backend_view.py).
        self.kept_subs: dict[tuple[int, bytes], int] = {}
        # The bytes of every revision held, as etcd's key bucket would hold them (its record
        # and revision key): the state's size, for the quota and Status.
        self.size = 0

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
        return self._range_at(key, end, at, limit, count_only, at == self.current_rev)

    def _range_at(self, key, end, at, limit, count_only, latest: bool) -> RangeResult:
        """``latest``: ``at`` is the state the index holds now (no newer write in it), so the
        count comes from ranks in O(log n) and the scan stops at the limit: a page costs its
        own keys, not the rest of the range. An older ``at`` scans and counts as etcd does."""
        index = self.index
        if latest and (count_only or limit > 0):
            count = index.count_live(key, end)
            if count_only:
                return RangeResult([], count, self.current_rev)
            kvs, _ = index.collect(key, end, at, limit, False, False)
            return RangeResult(kvs, count, self.current_rev)
        kvs, count = index.collect(key, end, at, limit, count_only)
        return RangeResult(kvs, count, self.current_rev)

    def first(self, key: bytes, end: bytes | None, at: int, limit: int) -> list[KeyValue]:
        """Up to ``limit`` KeyValues visible at ``at`` in [key, end), without counting the
        rest (a chunk of a stream)."""
        return self.index.collect(key, end, at, limit, False, False)[0]

    def get(self, key: bytes, rev: int = 0) -> KeyValue | None:
        ki = self.index.get(key)
        if ki is None:
            return None
        return ki.get(rev if rev > 0 else self.current_rev)

    # -- writes --------------------------------------------------------------------------------

    def write(self) -> WriteTxn:
        return WriteTxn(self)

    def put_one(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """A revision of one put, committed (a write txn of that put alone, with no txn
        object: most writes are this): its revision."""
        rev = self.current_rev + 1
        kv, prev = _put_revision(self.index, key, value, lease, rev)
        self._commit(rev, [kv], [prev])
        return rev

    def compact(self, rev: int) -> None:
        """Forgets every revision that no read at or after ``rev`` can see, all at once."""
        self.start_compaction(rev)
        self.finish_compaction()

    def start_compaction(self, rev: int) -> None:
        """Compacts at ``rev`` as seen by every read from now on (older revisions answer
        Compacted, the history is cut); the key indexes are compacted later, a slice at a
        time (``compact_step``), as etcd's scheduled compaction does in batches. Until then
        they only hold revisions no read can reach. A newer compaction restarts the keys."""
        if rev <= self.compact_rev:
            raise errors.Compacted()
        if rev > self.current_rev:
            raise errors.FutureRev()
        self._keep_subs(rev)
        self.compact_rev = rev
        self.history.compact(rev)
        self._compact_from = b""

    def _keep_subs(self, rev: int) -> None:
        """Before the history is cut at ``rev``: the sub-revisions of the puts compaction may
        keep (only revisions of several changes have any but 0), and of those kept before,
        only what compaction at ``rev`` still keeps."""
        index, subs = self.index, self.kept_subs
        for (r, key) in list(subs):
            ki = index.get(key)
            kv = ki.get(rev) if ki is not None else None
            if kv is None or kv.mod_revision != r:
                del subs[(r, key)]
        history = self.history
        # (The history's first revision may be the previous compaction's, puts only: its
        # sub-revisions are in kept_subs already, not positions.)
        for i in range(history.index_from(self.compact_rev + 1), history.index_from(rev + 1)):
            r, changes = history[i]
            if len(changes) > 1:
                for sub, kv in enumerate(changes):
                    if sub and kv.version:
                        subs[(r, kv.key)] = sub

    @property
    def compacting(self) -> bool:
        """Key indexes are still to be compacted."""
        return self._compact_from is not None

    def compact_step(self, max_keys: int) -> bool:
        """Compacts the next ``max_keys`` key indexes; True while more remain."""
        if self._compact_from is None:
            return False
        index, rev = self.index, self.compact_rev
        keys = index.keys_from(self._compact_from, max_keys)
        for key in keys:
            ki = index.get(key)
            assert ki is not None  # keys_from just listed it
            old = ki.revisions_at(rev)
            if len(old) > 1 or old and not old[-1].version:  # something to drop
                if ki.compact(rev):
                    index.remove(key)
                self.size -= _revisions_size(old) - _revisions_size(ki.revisions_at(rev))
        if len(keys) < max_keys:
            self._compact_from = None
            return False
        self._compact_from = keys[-1] + b"\0"
        return True

    def finish_compaction(self) -> None:
        while self.compact_step(1 << 20):
            pass

    def history_from(self, rev: int) -> int:
        """Position in ``history`` of the first revision >= rev."""
        return self.history.index_from(rev)

    def _commit(self, rev: int, changes: list, prevs: list) -> None:
        self.current_rev = rev
        size = self.size
        for kv in changes:
            size += len(kv.encoded) + REVISION_KEY_BYTES
        self.size = size
        self.history.append(rev, tuple(changes))
        for observe in self.observers:
            observe(rev, changes, prevs)

    # -- snapshot ------------------------------------------------------------------------------

    def dump(self) -> dict:
        """The whole state as a few fields for msgpack, the bulk as flat bytes (state_codec)."""
        return {"format": SNAPSHOT_FORMAT, "current_rev": self.current_rev,
                "compact_rev": self.compact_rev, "keys": codec.encode_keys(self.index.all()),
                "history": codec.encode_history(self.history),
                "kept_subs": [[r, key, sub] for (r, key), sub in self.kept_subs.items()],
                "size": self.size}

    @classmethod
    def load(cls, state: dict) -> MVCCStore:
        if state.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot format {state.get('format')!r} is not {SNAPSHOT_FORMAT}")
        store = cls()
        store.current_rev = state["current_rev"]
        store.compact_rev = state["compact_rev"]
        key_indexes, store.history = codec.decode_state(state["keys"], state["history"])
        store.index.load(key_indexes)
        # (Absent from snapshots of kvstore before 0.14: their sub-revisions read as 0.)
        store.kept_subs = {(r, key): sub for r, key, sub in state.get("kept_subs", ())}
        size = state.get("size")
        store.size = size if size is not None else store.measure_size()
        return store

    def measure_size(self) -> int:
        """The state's size, counted revision by revision (``size`` keeps it up to date)."""
        return sum(_revisions_size(ki.revisions) for ki in self.index.all())


def _revisions_size(revisions) -> int:
    return sum(len(kv.encoded) for kv in revisions) + REVISION_KEY_BYTES * len(revisions)


def _put_revision(index, key: bytes, value: bytes, lease: int, rev: int):
    """Writes revision ``rev`` of ``key`` to the index: (the new KeyValue, the one it
    replaced or None)."""
    ki = index.get_or_create(key)
    key = ki.key  # every revision of a key shares one bytes object (not one per request)
    prev = ki.current()
    if prev is None:
        index.mark_live(key)
        kv = KeyValue(key, rev, rev, 1, value, lease)
    else:
        kv = KeyValue(key, prev.create_revision, rev, prev.version + 1, value, lease)
    ki.put(kv)
    return kv, prev


class WriteTxn:
    """One main revision's worth of writes. Reads inside it see its own earlier writes.

    ``end()`` advances the store revision only if something changed, as etcd does.
    """

    __slots__ = ("store", "rev", "changes", "prevs")

    def __init__(self, store: MVCCStore):
        self.store = store
        self.rev = store.current_rev + 1
        self.changes: list[KeyValue] = []
        self.prevs: list[KeyValue | None] = []

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
        res = store._range_at(key, end, at, limit, count_only, at == read_rev)
        return RangeResult(res.kvs, res.count, read_rev)

    def current(self, key: bytes) -> KeyValue | None:
        ki = self.store.index.get(key)
        return ki.current() if ki is not None else None

    def put(self, key: bytes, value: bytes, lease: int = 0) -> KeyValue:
        kv, prev = _put_revision(self.store.index, key, value, lease, self.rev)
        self.changes.append(kv)
        self.prevs.append(prev)
        return kv

    def delete_range(self, key: bytes, end: bytes | None) -> list[KeyValue]:
        """Deletes the live keys in [key, end); returns what they held before."""
        index = self.store.index
        live = [(ki, kv) for ki in index.scan(key, end) if (kv := ki.current()) is not None]
        deleted = [prev for _, prev in live]
        for ki, prev in live:
            tomb = KeyValue.tombstone(prev.key, self.rev)
            ki.tombstone(tomb)
            index.mark_dead(prev.key)
            self.changes.append(tomb)
            self.prevs.append(prev)
        return deleted

    def end(self) -> list[KeyValue]:
        if self.changes:
            self.store._commit(self.rev, self.changes, self.prevs)
        return self.changes

    def abort(self) -> None:
        """Undoes this txn's writes, newest first, instead of ``end()``: the store is left as if
        the txn never ran (an op that fails half-way through a txn must not leave the others)."""
        index = self.store.index
        for kv in reversed(self.changes):
            ki = index.get(kv.key)
            assert ki is not None  # this txn wrote kv to it
            ki.pop()
            if ki.is_empty():  # the txn created the key
                index.remove(kv.key)
            elif ki.current() is None:
                index.mark_dead(kv.key)
            else:
                index.mark_live(kv.key)
        self.changes = []
        self.prevs = []
