"""Watchers and their fan-out (etcd's watchableStore), with synced and unsynced groups.

A synced watcher has been handed every event up to the current revision: new revisions are
pushed to it as they commit. When its stream has no room (a slow reader), it becomes unsynced
and catches up later from the store's history, in batches of at most ``BATCH_REVS`` revisions,
when its stream drains. Nothing is buffered per watcher beyond the stream's bounded queue, so
a slow reader costs bounded memory and never blocks writes or other watchers. A watcher that
needs history that was compacted is told the compaction revision and removed.

Delivery goes to the watcher's sink (its stream), which owns encoding. A revision of one change
(nearly every write) goes through ``deliver_change(watchers, rev, kv, prev)``, which the store
gives the hub: it appends the serialized responses to the sinks' queues itself
(mvcc/watch_fanout.py says how, and what a sink has for it: ``queue``, ``closed``, ``woken``,
``wake()``) and returns the watchers whose queue was full. Everything else goes through the
sink's methods: ``has_room()``, ``deliver(w, rev, events) -> bool``,
``deliver_compacted(w, compact_rev)``, ``synced(w)``. An event is a (kv, prev) pair; kv is a
tombstone for a delete; prev is the revision it replaced (None for a create, or when it is not
at hand).
"""
from __future__ import annotations

import asyncio
from collections.abc import Collection

from .core import Watcher

BATCH_REVS = 1000  # etcd's watchBatchMaxRevs
# Catch-up responses also stop growing past this many key+value bytes (whole revisions only):
# unlike etcd, which bounds only revisions, so that clients with a 4 MiB receive limit (the
# gRPC default outside Go) are not sent 1000 revisions of large values in one message.
BATCH_BYTES = 1 << 20


class WatchHub:
    def __init__(self, mvcc, deliver_change):
        self.mvcc = mvcc
        # (watchers, rev, kv, prev) -> the watchers left behind, or None (see the docstring)
        self._deliver_change = deliver_change
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
        """A revision of one change, to its key's watchers and the ranges covering it."""
        key = kv.key
        targets: Collection[Watcher] | None = self._single.get(key)
        if self._ranges:
            covering = [w for w in self._ranges if w.covers(key)]
            if covering:
                targets = [*targets, *covering] if targets else covering
        if not targets:
            return
        behind = self._deliver_change(targets, rev, kv, prev)
        if behind:
            for w in behind:  # slow reader: catch up from history once it drains
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
