"""Live delivery of one change to the watchers of its key: the hot path of every put that
someone watches (pure-Python reference; ext/watch_fanout.pxi in mvcc_core is its compiled twin,
with the same results).

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

from . import wire


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
