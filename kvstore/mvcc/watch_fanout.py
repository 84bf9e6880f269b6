"""A watcher, and the live delivery of one change to the watchers of its key: the hot path of
every put that someone watches (pure-Python reference; ext/watch_fanout.pxi in mvcc_core is its
compiled twin, with the same results).

A Watcher is one watch of a key or a range, as the hub keeps it: what it wants, the next
revision it needs, its sink (the stream it belongs to), and the sink's own state in ``data``.

``deliver_change(watchers, rev, kv, prev, header, max_queued)``: ``watchers`` is any iterable
of Watcher (a key's set, in any order). Each that wants the change (its put/delete filter, and
``rev >= min_rev``) gets a WatchResponse of ``header`` (the serialized ResponseHeader of
``rev``), its id and the change's Event, with ``prev`` as prev_kv when the watcher asks for it,
appended to its sink's ``queue`` while the queue holds fewer than ``max_queued``; its
``min_rev`` becomes rev + 1 and its ``sent`` is set. Each Event is encoded once per call, not
once per watcher. A closed sink (``closed``) drops it. A sink that got one and is not ``woken``
has ``wake()`` called. Returns the watchers whose queue was full (None for none): they catch up
from history later.
"""
from __future__ import annotations

from typing import Any

from . import wire


class Watcher:
    __slots__ = ("id", "key", "end", "min_rev", "no_put", "no_delete", "prev_kv", "sink",
                 "synced", "removed", "sent", "data")

    def __init__(self, watch_id: int, key: bytes, end: bytes | None, start_rev: int,
                 sink, no_put: bool = False, no_delete: bool = False, prev_kv: bool = False):
        self.id = watch_id
        self.key = key
        self.end = end  # None: the single key; b"": every key >= key; else [key, end)
        self.min_rev = start_rev  # the next revision this watcher needs
        self.no_put = no_put
        self.no_delete = no_delete
        self.prev_kv = prev_kv  # its events carry the KeyValue the change replaced
        self.sink = sink
        self.synced = False
        self.removed = False
        self.sent = False  # an event was queued for it since its sink last cleared this
        self.data: Any = None  # the sink's own per-watcher state

    def covers(self, key: bytes) -> bool:
        end = self.end
        if end is None:
            return key == self.key
        return key >= self.key and (end == b"" or key < end)

    def wants(self, kv) -> bool:
        return not (self.no_delete if kv.version == 0 else self.no_put)


def deliver_change(watchers, rev: int, kv, prev, header: bytes, max_queued: int) -> list | None:
    deleted = kv.version == 0
    plain = with_prev = None
    behind = None
    for w in watchers:
        if (w.no_delete if deleted else w.no_put) or rev < w.min_rev:
            continue
        sink = w.sink
        if sink.closed:
            w.min_rev = rev + 1  # a closed stream drops everything
            continue
        queue = sink.queue
        if len(queue) >= max_queued:
            if behind is None:
                behind = []
            behind.append(w)
            continue
        if w.prev_kv and prev is not None:
            if with_prev is None:
                with_prev = wire.event(kv, prev)
            ev = with_prev
        else:
            if plain is None:
                plain = wire.event(kv, None)
            ev = plain
        queue.append(wire.watch_response(header, w.id, [ev], False))
        w.min_rev = rev + 1
        w.sent = True
        if not sink.woken:
            sink.wake()
    return behind
