"""One key's history: its generations, as etcd's keyIndex keeps them.

A generation runs from a key's creation to its deletion; the deletion's tombstone is the last
revision of that generation and a new, empty generation follows it. Revisions inside a
generation are KeyValues in ascending ``mod_revision`` order. Unlike etcd, the values live here
(there is no separate backend keyed by revision), so compaction simply drops them.
"""
from __future__ import annotations

from bisect import bisect_right
from operator import attrgetter

from .kv import KeyValue

_mod_revision = attrgetter("mod_revision")


class KeyIndex:
    __slots__ = ("key", "generations")

    def __init__(self, key: bytes):
        self.key = key
        self.generations: list[list[KeyValue]] = [[]]

    def put(self, kv: KeyValue) -> None:
        self.generations[-1].append(kv)

    def tombstone(self, tomb: KeyValue) -> None:
        """Ends the current generation with ``tomb``; the key must be live."""
        self.generations[-1].append(tomb)
        self.generations.append([])

    def current(self) -> KeyValue | None:
        """The live revision, or None when the key is deleted (or never existed)."""
        last = self.generations[-1]
        return last[-1] if last else None

    def get(self, at_rev: int) -> KeyValue | None:
        """The revision visible at ``at_rev``; None if the key did not exist then."""
        gens = self.generations
        last = len(gens) - 1
        for gi in range(last, -1, -1):
            g = gens[gi]
            if not g:
                continue
            if gi != last and g[-1].mod_revision <= at_rev:
                return None  # deleted at or before at_rev, and not re-created by then
            if g[0].mod_revision <= at_rev:
                return g[bisect_right(g, at_rev, key=_mod_revision) - 1]
        return None

    def since(self, rev: int) -> list[KeyValue]:
        """Every revision (tombstones included) with mod_revision >= rev, in order."""
        out: list[KeyValue] = []
        for g in self.generations:
            if g and g[-1].mod_revision >= rev:
                out.extend(g[bisect_right(g, rev - 1, key=_mod_revision):])
        return out

    def compact(self, at_rev: int) -> bool:
        """Drops revisions that no read at or after ``at_rev`` can see.

        Keeps, in the generation that is live at at_rev, the newest revision <= at_rev; removes
        generations that were deleted at or before at_rev. Returns True when nothing is left
        (the caller removes the key), as etcd's keyIndex.compact + isEmpty.
        """
        gens = self.generations
        gi = 0
        while gi < len(gens) - 1:
            if gens[gi][-1].mod_revision > at_rev:
                break
            gi += 1
        g = gens[gi]
        if g:
            keep_from = bisect_right(g, at_rev, key=_mod_revision) - 1
            if keep_from > 0:
                del g[:keep_from]
            if len(g) == 1 and gi != len(gens) - 1:
                gi += 1  # only the tombstone remained: drop that generation too
        if gi:
            del gens[:gi]
        return len(gens) == 1 and not gens[0]

    def is_empty(self) -> bool:
        return len(self.generations) == 1 and not self.generations[0]

    def revision_count(self) -> int:
        return sum(len(g) for g in self.generations)


def collect_visible(key_indexes, at_rev: int, limit: int, count_only: bool):
    """(kvs, count) of the KeyValues visible at at_rev: the loop of every range read.

    ``kvs`` holds at most ``limit`` of them (all if limit <= 0; none if count_only);
    ``count`` counts every visible one.
    """
    kvs: list[KeyValue] = []
    count = 0
    for ki in key_indexes:
        kv = ki.get(at_rev)
        if kv is None:
            continue
        if not count_only and (limit <= 0 or count < limit):
            kvs.append(kv)
        count += 1
    return kvs, count
