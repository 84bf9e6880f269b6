"""The ordered index of all keys (etcd's treeIndex): key -> KeyIndex, scanned in key order."""
from __future__ import annotations

from itertools import islice
from typing import Iterator

from sortedcontainers import SortedList

from .core import KeyIndex, KeyValue


class TreeIndex:
    def __init__(self):
        self._keys = SortedList()
        self._by_key: dict[bytes, KeyIndex] = {}
        # Keys whose newest revision is a tombstone (deleted, kept until compaction): live keys
        # in a range are its keys minus these, counted by rank in O(log n) (count_live).
        self._dead = SortedList()

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: bytes) -> KeyIndex | None:
        return self._by_key.get(key)

    def get_or_create(self, key: bytes) -> KeyIndex:
        ki = self._by_key.get(key)
        if ki is None:
            ki = self._by_key[key] = KeyIndex(key)
            self._keys.add(key)
        return ki

    def load(self, key_indexes: list) -> None:
        """Fills an empty index with KeyIndexes given in key order (a snapshot's)."""
        self._by_key = {ki.key: ki for ki in key_indexes}
        self._keys = SortedList(self._by_key)
        self._dead = SortedList(ki.key for ki in key_indexes if ki.current() is None)

    def remove(self, key: bytes) -> None:
        del self._by_key[key]
        self._keys.remove(key)
        self._dead.discard(key)

    def mark_dead(self, key: bytes) -> None:
        """The key's newest revision is now a tombstone."""
        if key not in self._dead:  # a SortedList keeps duplicates
            self._dead.add(key)

    def mark_live(self, key: bytes) -> None:
        """The key (new, or deleted before) has a live revision again."""
        if self._dead:
            self._dead.discard(key)

    def count_live(self, key: bytes, end: bytes | None) -> int:
        """How many keys in [key, end) are live now (``end`` as in scan)."""
        if end is None:
            ki = self._by_key.get(key)
            return int(ki is not None and ki.current() is not None)
        return _rank_count(self._keys, key, end) - _rank_count(self._dead, key, end)

    def scan(self, key: bytes, end: bytes | None) -> Iterator[KeyIndex]:
        """KeyIndexes in [key, end) in key order.

        ``end is None`` means the single key; ``end == b""`` means every key >= key (the
        "\\0" range end of the API, already translated by the caller).
        """
        if end is None:
            ki = self._by_key.get(key)
            if ki is not None:
                yield ki
            return
        by_key = self._by_key
        if end == b"":
            keys = self._keys.irange(key, None)
        else:
            if end <= key:
                return
            keys = self._keys.irange(key, end, inclusive=(True, False))
        for k in keys:
            yield by_key[k]

    def keys_from(self, key: bytes, n: int) -> list[bytes]:
        """Up to ``n`` keys >= key, in order."""
        return list(islice(self._keys.irange(key, None), n))

    def visible(self, key: bytes, end: bytes | None, at_rev: int) -> Iterator[KeyValue]:
        """The KeyValues visible at ``at_rev`` in [key, end), in key order."""
        for ki in self.scan(key, end):
            kv = ki.get(at_rev)
            if kv is not None:
                yield kv

    def all(self) -> Iterator[KeyIndex]:
        by_key = self._by_key
        for k in self._keys:
            yield by_key[k]


def _rank_count(keys: SortedList, key: bytes, end: bytes) -> int:
    if end == b"":
        return len(keys) - keys.bisect_left(key)
    if end <= key:
        return 0
    return keys.bisect_left(end) - keys.bisect_left(key)
