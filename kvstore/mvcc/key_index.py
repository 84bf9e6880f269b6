"""One key's history, as etcd's keyIndex keeps it: pure-Python twin of ext/mvcc_core.pyx.

etcd splits a key's revisions into generations, each running from a creation to the deletion
that ends it. Here they are one list in ascending ``mod_revision``: a tombstone (version 0)
ends its generation, so the generations are implied (``generations`` rebuilds them for
inspection) and a key costs one array rather than a list of lists. Unlike etcd, the values
live here (there is no separate backend keyed by revision), so compaction simply drops them.
"""
from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from operator import attrgetter

from .kv import KeyValue
from .wire import varint

_mod_revision = attrgetter("mod_revision")
_REVISION_KEY = struct.Struct(">QcQ")  # etcd's revision key: main, "_", sub


class KeyIndex:
    __slots__ = ("key", "_revs")

    def __init__(self, key: bytes, revisions: list | None = None):
        self.key = key
        self._revs: list[KeyValue] = list(revisions) if revisions else []

    @property
    def revisions(self) -> list[KeyValue]:
        """Every revision kept, tombstones included, oldest first (a copy)."""
        return list(self._revs)

    @property
    def generations(self) -> list[list[KeyValue]]:
        """etcd's view: the revisions cut after each tombstone; the last generation is the
        live one (empty while the key is deleted)."""
        gens: list[list[KeyValue]] = [[]]
        for kv in self._revs:
            gens[-1].append(kv)
            if kv.version == 0:
                gens.append([])
        return gens

    def put(self, kv: KeyValue) -> None:
        self._revs.append(kv)

    def tombstone(self, tomb: KeyValue) -> None:
        """Ends the current generation with ``tomb``; the key must be live."""
        self._revs.append(tomb)

    def pop(self) -> KeyValue:
        """Removes the newest revision (a write transaction being undone)."""
        return self._revs.pop()

    def current(self) -> KeyValue | None:
        """The live revision, or None when the key is deleted (or never existed)."""
        revs = self._revs
        return revs[-1] if revs and revs[-1].version else None

    def get(self, at_rev: int) -> KeyValue | None:
        """The revision visible at ``at_rev``; None if the key did not exist then (its newest
        revision by then is a tombstone, or there is none)."""
        revs = self._revs
        i = bisect_right(revs, at_rev, key=_mod_revision) - 1
        if i < 0 or revs[i].version == 0:
            return None
        return revs[i]

    def at(self, rev: int) -> KeyValue | None:
        """The revision whose mod_revision is exactly ``rev``, if kept."""
        revs = self._revs
        i = bisect_left(revs, rev, key=_mod_revision)
        return revs[i] if i < len(revs) and revs[i].mod_revision == rev else None

    def since(self, rev: int) -> list[KeyValue]:
        """Every revision (tombstones included) with mod_revision >= rev, in order."""
        revs = self._revs
        return revs[bisect_left(revs, rev, key=_mod_revision):]

    def revisions_at(self, at_rev: int) -> list[KeyValue]:
        """The revisions as they were when ``at_rev`` was the newest revision (writes since
        then only appended)."""
        revs = self._revs
        return revs[:bisect_right(revs, at_rev, key=_mod_revision)]

    def compact(self, at_rev: int) -> bool:
        """Drops revisions that no read at or after ``at_rev`` can see: everything before the
        newest revision <= at_rev, and that one too if it is a tombstone (the key was deleted
        by then). Returns True when nothing is left (the caller removes the key), as etcd's
        keyIndex.compact + isEmpty."""
        revs = self._revs
        i = bisect_right(revs, at_rev, key=_mod_revision) - 1
        if i >= 0:
            del revs[:i + 1 if revs[i].version == 0 else i]
        return not revs

    def is_empty(self) -> bool:
        return not self._revs

    def revision_count(self) -> int:
        return len(self._revs)


def collect_visible(key_indexes, at_rev: int, limit: int, count_only: bool,
                    full_count: bool = True):
    """(kvs, count) of the KeyValues visible at at_rev: the loop of every range read.

    ``kvs`` holds at most ``limit`` of them (all if limit <= 0; none if count_only);
    ``count`` counts every visible one, unless ``full_count`` is False: then the scan stops at
    the limit (the caller counts another way) and count is len(kvs).
    """
    kvs: list[KeyValue] = []
    count = 0
    for ki in key_indexes:
        kv = ki.get(at_rev)
        if kv is None:
            continue
        if not count_only and (limit <= 0 or count < limit):
            kvs.append(kv)
        elif not full_count:
            break
        count += 1
    return kvs, count


def deleted(key_indexes) -> list:
    """The key indexes whose newest revision is a tombstone (or that hold none), in order."""
    return [ki for ki in key_indexes if ki.current() is None]


def kept_revisions(key_indexes, compact_rev: int, upto: int, as_hashed: bool, subs: dict):
    """What compaction at compact_rev kept of these keys (each one's newest put by then), as
    (main, sub, KeyValue), and those still the key's newest at upto; and whether any key is
    live at upto (only looked at with as_hashed). The loop of HashKV and of etcd snapshots
    (backend_view.py)."""
    kept: list = []
    at_upto: list = []
    live = False
    for ki in key_indexes:
        kv = ki.get(compact_rev)
        newest = ki.get(upto) if as_hashed else None
        if newest is not None:
            live = True
        if kv is None or kv.mod_revision > upto:
            continue
        item = (kv.mod_revision, subs.get((kv.mod_revision, ki.key), 0) if subs else 0, kv)
        kept.append(item)
        if newest is kv:
            at_upto.append(item)
    return kept, at_upto, live


def encode_records(items: list, start: int = 0, max_bytes: int = 1 << 20) -> tuple[bytes, int]:
    """etcd's key bucket records of the (main, sub, KeyValue) items from ``start``, one after
    the other, until ``max_bytes`` (at least one record): each revision key, then the marshaled
    KeyValue (a tombstone's: its key only); and where they stopped."""
    out = bytearray()
    pack = _REVISION_KEY.pack
    i, end = start, len(items)
    while i < end and (i == start or len(out) < max_bytes):
        main, sub, kv = items[i]
        i += 1
        out += pack(main, b"_", sub)
        if kv.version:
            out += kv.encoded
        else:
            out += b"t\x0a"
            out += varint(len(kv.key))
            out += kv.key
    return bytes(out), i
