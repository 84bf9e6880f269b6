"""The changes of every revision since the compaction point, in revision order: what watchers
catch up from (etcd reads the same from its backend by revision). Pure-Python twin of the
History in ext/mvcc_core.pyx, which keeps a revision in 16 bytes (its number and one
reference) instead of a tuple pair per revision.
"""
from __future__ import annotations

from bisect import bisect_left


class History:
    __slots__ = ("_revs", "_changes")

    def __init__(self):
        self._revs: list[int] = []
        self._changes: list[tuple] = []  # per revision: its KeyValues in sub-revision order

    def append(self, rev: int, changes: tuple) -> None:
        """Adds the newest revision (greater than any held) and its changes."""
        self._revs.append(rev)
        self._changes.append(changes)

    def __len__(self) -> int:
        return len(self._revs)

    def __getitem__(self, i: int) -> tuple:
        """(revision, changes) of the i-th revision held."""
        return self._revs[i], self._changes[i]

    def __iter__(self):
        return zip(self._revs, self._changes)

    def index_from(self, rev: int) -> int:
        """Position of the first revision >= rev."""
        return bisect_left(self._revs, rev)

    def compact(self, rev: int) -> None:
        """Drops revisions before ``rev``; at ``rev`` itself only the puts survive, as in etcd's
        backend (a tombstone at the compaction revision is removed with its key)."""
        i = bisect_left(self._revs, rev)
        del self._revs[:i]
        del self._changes[:i]
        if self._revs and self._revs[0] == rev:
            kept = tuple(kv for kv in self._changes[0] if kv.version)
            if kept:
                self._changes[0] = kept
            else:
                del self._revs[0]
                del self._changes[0]

    def matching(self, i: int, stop: int, key: bytes, end: bytes | None, no_put: bool,
                 no_delete: bool, max_bytes: int) -> tuple[list, int]:
        """A watcher's catch-up: the changes of revisions i..stop-1 (positions) on ``key``
        (end None: that key; b"": every key from it; else [key, end)) that its filters let
        through, whole revisions until their keys and values pass ``max_bytes``; and the
        position after the last revision read."""
        out = []
        size = 0
        j = max(i, 0)
        stop = min(stop, len(self._revs))
        changes = self._changes
        while j < stop and size < max_bytes:
            for kv in changes[j]:
                k = kv.key
                if (k != key) if end is None else (k < key or (end != b"" and k >= end)):
                    continue
                if no_delete if kv.version == 0 else no_put:
                    continue
                out.append(kv)
                size += len(k) + len(kv.value)
            j += 1
        return out, j
