"""What a user may read and write: the key ranges of its roles' permissions, merged, as etcd's
range permission cache (auth/range_perm_cache.go) unifies them.

A permission on one key (no range end) covers that key alone; one with a range end covers
[key, range_end); a range end of "\\0" covers every key from ``key`` on; one whose key is empty
covers nothing (etcdctl grants "every key" as ["\\0", "\\0")). A request on a range is
permitted when the user's merged ranges cover all of it (several permissions may cover it
together, side by side); a request on one key, when one of them holds the key.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from ...api import auth_pb2

READ = auth_pb2.Permission.READ
WRITE = auth_pb2.Permission.WRITE
READWRITE = auth_pb2.Permission.READWRITE

# An interval's end: None is past every key (a range end of "\0").
Interval = tuple[bytes, bytes | None]


def permission_interval(key: bytes, range_end: bytes) -> Interval | None:
    """None: nothing (etcd orders keys "affinely": an empty key is past every other, so a
    permission that begins there covers no key)."""
    if not key:
        return None
    if not range_end:
        return key, key + b"\x00"  # the key alone
    if range_end == b"\x00":
        return key, None
    return key, range_end


def _ends_after(a: bytes | None, b: bytes | None) -> bool:
    """a >= b, None being past every key."""
    return a is None or (b is not None and a >= b)


class Ranges:
    """Disjoint, sorted intervals: the union of those given (touching ones merge)."""

    __slots__ = ("_begins", "_ends")

    def __init__(self, intervals: Iterable[Interval]):
        begins: list[bytes] = []
        ends: list[bytes | None] = []
        for begin, end in sorted(intervals, key=lambda i: i[0]):
            if end is not None and end <= begin:
                continue  # empty
            if ends and _ends_after(ends[-1], begin):
                if not _ends_after(ends[-1], end):
                    ends[-1] = end
                continue
            begins.append(begin)
            ends.append(end)
        self._begins = begins
        self._ends = ends

    def _holder(self, key: bytes) -> int:
        """The index of the interval beginning at or before ``key`` (-1: none)."""
        return bisect_right(self._begins, key) - 1

    def holds(self, key: bytes) -> bool:
        i = self._holder(key)
        if i < 0:
            return False
        end = self._ends[i]
        return end is None or key < end

    def covers(self, begin: bytes, end: bytes | None) -> bool:
        """[begin, end) lies within one merged interval (None: to the end of the keyspace)."""
        i = self._holder(begin)
        return i >= 0 and _ends_after(self._ends[i], end)


class UserPermissions:
    """A user's merged read and write ranges (etcd's unifiedRangePermissions)."""

    __slots__ = ("read", "write")

    def __init__(self, permissions: Iterable[auth_pb2.Permission]):
        reads: list[Interval] = []
        writes: list[Interval] = []
        for perm in permissions:
            interval = permission_interval(perm.key, perm.range_end)
            if interval is None:
                continue
            if perm.permType in (READ, READWRITE):
                reads.append(interval)
            if perm.permType in (WRITE, READWRITE):
                writes.append(interval)
        self.read = Ranges(reads)
        self.write = Ranges(writes)

    def permits(self, key: bytes, range_end: bytes, perm: int) -> bool:
        """A request on ``key`` (and up to ``range_end``, if any) needing ``perm``."""
        ranges = self.read if perm == READ else self.write
        if not range_end:
            return ranges.holds(key)
        return ranges.covers(key, None if range_end == b"\x00" else range_end)
