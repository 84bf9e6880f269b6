"""The ordered index of all keys (etcd's treeIndex): key -> KeyIndex, scanned in key order."""
from __future__ import annotations

from typing import Iterator

from sortedcontainers import SortedList

from .core import KeyIndex, KeyValue


class TreeIndex:
    def __init__(self):
        self._keys = SortedList()
        self._by_key: dict[bytes, KeyIndex] = {}

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

    def remove(self, key: bytes) -> None:
        del self._by_key[key]
        self._keys.remove(key)

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
