"""Watchers and their fan-out (etcd's watchableStore), with synced and unsynced groups.

A synced watcher has been handed every event up to the current revision: new revisions are
pushed to it as they commit. When its stream has no room (a slow reader), it becomes unsynced
and catches up later from the store's history, in batches of at most ``BATCH_REVS`` revisions,
when its stream drains. Nothing is buffered per watcher beyond the stream's bounded queue, so
a slow reader costs bounded memory and never blocks writes or other watchers. A watcher that
needs history that was compacted is told the compaction revision and removed.

Delivery goes to the watcher's sink (its stream), which owns encoding: ``has_room()``,
``deliver(w, rev, events) -> bool``, ``deliver_one(watchers, rev, kv, prev) -> int`` (a
revision of one change to several of its watchers: how many, from the first, got it),
``deliver_compacted(w, compact_rev)``, ``synced(w)``. An event is a (kv, prev) pair; kv is a
tombstone for a delete; prev is the revision it replaced (None for a create, or when it is not
at hand).
"""
from __future__ import annotations

import asyncio
from typing import Any

BATCH_REVS = 1000  # etcd's watchBatchMaxRevs
# Catch-up responses also stop growing past this many key+value bytes (whole revisions only):
# unlike etcd, which bounds only revisions, so that clients with a 4 MiB receive limit (the
# gRPC default outside Go) are not sent 1000 revisions of large values in one message.
BATCH_BYTES = 1 << 20


class Watcher:
    __slots__ = ("id", "key", "end", "min_rev", "no_put", "no_delete", "sink", "synced",
                 "removed", "data")

    def __init__(self, watch_id: int, key: bytes, end: bytes | None, start_rev: int,
                 sink, no_put: bool = False, no_delete: bool = False):
        self.id = watch_id
        self.key = key
        self.end = end  # None: the single key; b"": every key >= key; else [key, end)
        self.min_rev = start_rev  # the next revision this watcher needs
        self.no_put = no_put
        self.no_delete = no_delete
        self.sink = sink
        self.synced = False
        self.removed = False
        self.data: Any = None  # the sink's own per-watcher state

    def covers(self, key: bytes) -> bool:
        end = self.end
        if end is None:
            return key == self.key
        return key >= self.key and (end == b"" or key < end)

    def wants(self, kv) -> bool:
        return not (self.no_delete if kv.version == 0 else self.no_put)


class WatchHub:
    def __init__(self, mvcc):
        self.mvcc = mvcc
        self._single: dict[bytes, set[Watcher]] = {}
        self._ranges: set[Watcher] = set()
        self._unsynced: set[Watcher] = set()
        self._sync_handle: asyncio.Handle | None = None
        mvcc.observers.append(self.notify)

    def __len__(self) -> int:
        return self.synced_count + len(self._unsynced)

    @property
    def synced_count(self) -> int:
        return sum(len(ws) for ws in self._single.values()) + len(self._ranges)

    @property
    def unsynced_count(self) -> int:
        return len(self._unsynced)

    # -- membership ----------------------------------------------------------------------------

    def add(self, w: Watcher) -> None:
        """start_rev 0 means "from the next revision"; a past start replays history first."""
        current = self.mvcc.current_rev
        if w.min_rev == 0 or w.min_rev > current:
            w.min_rev = max(w.min_rev, current + 1)
            self._add_synced(w)
        else:
            self._to_unsynced(w)
            self.request_sync()

    def remove(self, w: Watcher) -> None:
        w.removed = True
        if w.synced:
            self._remove_synced(w)
        else:
            self._from_unsynced(w)

    # Each sink counts its watchers in the unsynced group, so "are all of mine synced" (a
    # progress request) costs nothing however many watchers it has.

    def _to_unsynced(self, w: Watcher) -> None:
        if w not in self._unsynced:
            self._unsynced.add(w)
            w.sink.unsynced_watchers += 1

    def _from_unsynced(self, w: Watcher) -> None:
        if w in self._unsynced:
            self._unsynced.discard(w)
            w.sink.unsynced_watchers -= 1

    def _add_synced(self, w: Watcher) -> None:
        w.synced = True
        if w.end is None:
            self._single.setdefault(w.key, set()).add(w)
        else:
            self._ranges.add(w)

    def _remove_synced(self, w: Watcher) -> None:
        w.synced = False
        if w.end is None:
            ws = self._single.get(w.key)
            if ws is not None:
                ws.discard(w)
                if not ws:
                    del self._single[w.key]
        else:
            self._ranges.discard(w)

    def move_to(self, other: WatchHub) -> None:
        """Hands every watcher to ``other`` (the hub of a state installed from a snapshot):
        each catches up there from its next revision, from the new state's history."""
        watchers = [*self._unsynced, *self._ranges, *(w for ws in self._single.values() for w in ws)]
        for w in list(self._unsynced):
            self._from_unsynced(w)
        self._single.clear()
        self._ranges.clear()
        for w in watchers:
            w.synced = False
            other._to_unsynced(w)
        other.request_sync()

    # -- live fan-out --------------------------------------------------------------------------

    def notify(self, rev: int, changes: list, prevs: list) -> None:
        """Pushes one committed revision to the synced watchers it concerns."""
        single, ranges = self._single, self._ranges
        if not single and not ranges:
            return
        if len(changes) == 1:  # nearly always: one change, its watchers grouped by stream
            self._notify_one(rev, changes[0], prevs[0])
            return
        batches: dict[Watcher, list] = {}
        for kv, prev in zip(changes, prevs):
            ws = single.get(kv.key)
            if ws:
                for w in ws:
                    if w.wants(kv) and rev >= w.min_rev:
                        batches.setdefault(w, []).append((kv, prev))
            if ranges:
                for w in ranges:
                    if w.covers(kv.key) and w.wants(kv) and rev >= w.min_rev:
                        batches.setdefault(w, []).append((kv, prev))
        for w, events in batches.items():
            if w.sink.deliver(w, rev, events):
                w.min_rev = rev + 1
            else:  # slow reader: catch up from history once its stream drains
                w.min_rev = rev
                self._remove_synced(w)
                self._to_unsynced(w)

    def _notify_one(self, rev: int, kv, prev) -> None:
        """A revision of one change: each stream gets its watchers of it in one call."""
        key = kv.key
        ws = self._single.get(key)
        targets = list(ws) if ws else []
        if self._ranges:
            targets += [w for w in self._ranges if w.covers(key)]
        if not targets:
            return
        deleted = kv.version == 0
        by_sink: dict[Any, list[Watcher]] = {}
        for w in targets:
            if not (w.no_delete if deleted else w.no_put) and rev >= w.min_rev:
                group = by_sink.get(w.sink)
                if group is None:
                    by_sink[w.sink] = [w]
                else:
                    group.append(w)
        for sink, group in by_sink.items():
            sent = sink.deliver_one(group, rev, kv, prev)  # the first ``sent`` got it
            for w in group[:sent]:
                w.min_rev = rev + 1
            for w in group[sent:]:  # slow reader: catch up from history once it drains
                w.min_rev = rev
                self._remove_synced(w)
                self._to_unsynced(w)

    # -- catch-up ------------------------------------------------------------------------------

    def request_sync(self) -> None:
        if self._unsynced and self._sync_handle is None:
            self._sync_handle = asyncio.get_running_loop().call_soon(self._sync)

    def _sync(self) -> None:
        self._sync_handle = None
        self.sync()

    def sync(self) -> None:
        """Moves unsynced watchers forward from history, as far as their streams have room."""
        mvcc = self.mvcc
        current, compact = mvcc.current_rev, mvcc.compact_rev
        for w in list(self._unsynced):
            if not w.sink.has_room():
                continue
            if w.min_rev < compact:
                self._from_unsynced(w)
                w.removed = True
                w.sink.deliver_compacted(w, compact)
                continue
            events, next_rev = self._history_events(w, current)
            if events:
                w.sink.deliver(w, current, events)
            w.min_rev = next_rev
            if next_rev > current:
                self._from_unsynced(w)
                self._add_synced(w)
                w.sink.synced(w)
        if self._unsynced and any(w.sink.has_room() for w in self._unsynced):
            self.request_sync()

    def _history_events(self, w: Watcher, current: int) -> tuple[list, int]:
        """Events for w from w.min_rev, at most BATCH_REVS revisions; and the next revision.
        The history's own loop (C, or its twin) picks the changes; only those get a prev."""
        mvcc = self.mvcc
        history = mvcc.history
        i = mvcc.history_from(w.min_rev)
        kvs, j = history.matching(i, i + BATCH_REVS, w.key, w.end, w.no_put, w.no_delete,
                                  BATCH_BYTES)
        index = mvcc.index
        events = [(kv, _prev_of(index, kv, kv.mod_revision)) for kv in kvs]
        if j == len(history):
            return events, current + 1
        return events, history[j][0]


def _prev_of(index, kv, rev: int):
    """The revision a change replaced; None for a create (etcd's IsCreateEvent)."""
    if kv.version == 1:
        return None
    ki = index.get(kv.key)
    return ki.get(rev - 1) if ki is not None else None
