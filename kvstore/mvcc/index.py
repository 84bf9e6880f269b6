"""The ordered index of all keys (etcd's treeIndex): key -> KeyIndex, scanned in key order.

OrderedKeys (a sorted C array in chunks, ext/ordered_keys.pxi) both finds a key (binary search,
~0.2 µs) and keeps the order for range reads: no dict beside it, whose ~40 bytes a key were
the largest share of the index's memory. A second OrderedKeys holds the keys whose newest revision is a
tombstone (deleted, kept until compaction): the live keys of a range are its keys minus these,
counted by rank in O(log n) (count_live).
"""
from __future__ import annotations

from collections.abc import Iterator

from .core import KeyIndex, OrderedKeys, collect_visible, deleted


class TreeIndex:
    def __init__(self):
        self._order = OrderedKeys()
        self._dead = OrderedKeys()

    def __len__(self) -> int:
        return len(self._order)

    def live_count(self) -> int:
        """Keys whose newest revision is not a tombstone (etcd's etcd_debugging_mvcc_keys_total)."""
        return len(self._order) - len(self._dead)

    def get(self, key: bytes) -> KeyIndex | None:
        return self._order.get(key)

    def get_or_create(self, key: bytes) -> KeyIndex:
        ki = self._order.get(key)
        if ki is None:
            ki = KeyIndex(key)
            self._order.add(ki)
        return ki

    def load(self, key_indexes: list[KeyIndex]) -> None:
        """Fills an empty index with KeyIndexes given in key order (a snapshot's)."""
        self._order = OrderedKeys(key_indexes)
        self._dead = OrderedKeys(deleted(key_indexes))

    def remove(self, key: bytes) -> None:
        if not self._order.remove(key):
            raise KeyError(key)
        self._dead.remove(key)

    def mark_dead(self, key: bytes) -> None:
        """The key's newest revision is now a tombstone."""
        if key not in self._dead:
            ki = self._order.get(key)
            assert ki is not None  # callers pass a key of the index (deleted or written just now)
            self._dead.add(ki)

    def mark_live(self, key: bytes) -> None:
        """The key (new, or deleted before) has a live revision again."""
        if len(self._dead):
            self._dead.remove(key)

    def count_live(self, key: bytes, end: bytes | None) -> int:
        """How many keys in [key, end) are live now (``end`` as in scan)."""
        if end is None:
            ki = self._order.get(key)
            return int(ki is not None and ki.current() is not None)
        return self._order.count(key, end) - self._dead.count(key, end)

    def scan(self, key: bytes, end: bytes | None) -> Iterator[KeyIndex]:
        """KeyIndexes in [key, end) in key order.

        ``end is None`` means the single key; ``end == b""`` means every key >= key (the
        "\\0" range end of the API, already translated by the caller).
        """
        if end is None:
            ki = self._order.get(key)
            return iter(() if ki is None else (ki,))
        return self._order.scan(key, end)

    def collect(self, key: bytes, end: bytes | None, at_rev: int, limit: int, count_only: bool,
                full_count: bool = True):
        """(kvs, count) visible at ``at_rev`` in [key, end): core.collect_visible over scan."""
        if end is None:
            return collect_visible(self.scan(key, end), at_rev, limit, count_only, full_count)
        return self._order.collect(key, end, at_rev, limit, count_only, full_count)

    def keys_from(self, key: bytes, n: int) -> list[bytes]:
        """Up to ``n`` keys >= key, in order."""
        return self._order.keys_from(key, n)

    def all(self) -> Iterator[KeyIndex]:
        return iter(self._order)
