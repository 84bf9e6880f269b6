"""KeyIndexes in key order: pure-Python twin of OrderedKeys in ext/ordered_keys.pxi.

The compiled one is a two-level sorted array in C (chunks of at most 1,024 references, found by
binary search on their last keys): 8 bytes a key plus slack, inserts that move at most one
chunk, and range reads that walk the chunks and pick each key's visible revision without a
Python call per key. This twin keeps the same order in a sortedcontainers list.
"""
from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter

from sortedcontainers import SortedKeyList

from .key_index import KeyIndex, collect_visible


class OrderedKeys:
    __slots__ = ("_kis",)

    def __init__(self, key_indexes=()):
        """``key_indexes`` in key order, unique keys."""
        self._kis = SortedKeyList(key_indexes, key=attrgetter("key"))

    def __len__(self) -> int:
        return len(self._kis)

    def __iter__(self) -> Iterator[KeyIndex]:
        return iter(self._kis)

    def add(self, ki: KeyIndex) -> None:
        """Adds a KeyIndex whose key is not held yet."""
        self._kis.add(ki)

    def remove(self, key: bytes) -> bool:
        """Removes the KeyIndex of ``key``; False if there was none."""
        kis = self._kis
        i = kis.bisect_key_left(key)
        if i < len(kis) and kis[i].key == key:
            del kis[i]
            return True
        return False

    def get(self, key: bytes) -> KeyIndex | None:
        """The KeyIndex of ``key``, or None."""
        kis = self._kis
        i = kis.bisect_key_left(key)
        return kis[i] if i < len(kis) and kis[i].key == key else None

    def __contains__(self, key: bytes) -> bool:
        kis = self._kis
        i = kis.bisect_key_left(key)
        return i < len(kis) and kis[i].key == key

    def rank(self, key: bytes) -> int:
        """How many keys are < ``key``."""
        return self._kis.bisect_key_left(key)

    def count(self, key: bytes, end: bytes) -> int:
        """Keys in [key, end); ``end == b""`` means no upper bound."""
        if end == b"":
            return len(self._kis) - self.rank(key)
        if end <= key:
            return 0
        return self.rank(end) - self.rank(key)

    def scan(self, key: bytes, end: bytes) -> Iterator[KeyIndex]:
        """KeyIndexes in [key, end) in key order (``end == b""``: no upper bound)."""
        kis = self._kis
        if end == b"":
            return kis.irange_key(key, None)
        if end <= key:
            return iter(())
        return kis.irange_key(key, end, inclusive=(True, False))

    def keys_from(self, key: bytes, n: int) -> list[bytes]:
        """Up to ``n`` keys >= key, in order."""
        out: list[bytes] = []
        for ki in self._kis.irange_key(key, None):
            if len(out) == n:
                break
            out.append(ki.key)
        return out

    def collect(self, key: bytes, end: bytes, at_rev: int, limit: int, count_only: bool,
                full_count: bool = True):
        """collect_visible over scan(key, end), as one call."""
        return collect_visible(self.scan(key, end), at_rev, limit, count_only, full_count)
