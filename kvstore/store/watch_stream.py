"""One client's Watch stream: its watchers, and the ordered queue of responses for it.

The stream is the sink the WatchHub delivers to. Responses are encoded when delivered and
queued in order (control responses and events alike), so a watcher's "created" always precedes
its events and a progress response follows everything queued before it. The queue is bounded:
when it is full the hub stops pushing and the watchers catch up from history once the reader
drains it.
"""
from __future__ import annotations

import asyncio
from collections import deque

from ..api import kv_pb2, rpc_pb2 as pb
from ..limits import with_overhead
from ..mvcc.watch_hub import Watcher
from .apply import kv_to_pb
from .ranges import range_end

MAX_QUEUED = 256  # responses; beyond this watchers on the stream fall back to catch-up
_DRAINED = MAX_QUEUED // 2
INVALID_WATCH_ID = -1  # clientv3.InvalidWatchID

_PUT, _DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE
_NOPUT, _NODELETE = pb.WatchCreateRequest.NOPUT, pb.WatchCreateRequest.NODELETE

ERR_EMPTY_RANGE = "mvcc: watcher range is empty"
ERR_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"


class WatchOptions:
    """What the stream remembers per watcher (etcd keeps these maps in serverWatchStream)."""

    __slots__ = ("prev_kv", "fragment", "progress_notify", "sent_since_tick")

    def __init__(self, prev_kv: bool, fragment: bool, progress_notify: bool):
        self.prev_kv = prev_kv
        self.fragment = fragment
        self.progress_notify = progress_notify
        self.sent_since_tick = False


class WatchStream:
    def __init__(self, store):
        self._store = store
        self._hub = store.watch_hub
        self._cache: DeliveryCache = store.watch_delivery
        self._queue: deque[pb.WatchResponse] = deque()
        # a future the reader waits on when the queue is empty (asyncio.Event would look the
        # loop up on every wait: a getpid() system call on Python 3.11)
        self._wakeup: asyncio.Future | None = None
        self._closed = False
        self._next_id = 0
        self._progress_pending = False
        self.watchers: dict[int, Watcher] = {}
        # ids of watchers canceled for compaction: as in etcd they stay taken, and a cancel of
        # them is answered, until the client cancels them
        self._compacted_ids: set[int] = set()
        self.max_fragment_bytes = with_overhead(store.max_request_bytes)
        store.watch_streams.add(self)

    # -- requests from the client --------------------------------------------------------------

    def handle(self, req: pb.WatchRequest) -> None:
        which = req.WhichOneof("request_union")
        if which == "create_request":
            self.create(req.create_request)
        elif which == "cancel_request":
            self.cancel(req.cancel_request.watch_id)
        elif which == "progress_request":
            self.request_progress()
        # anything else is ignored, as etcd does

    def create(self, c: pb.WatchCreateRequest) -> None:
        key = c.key or b"\x00"  # \x00 is the smallest key
        end = range_end(c.range_end)
        current = self._store.mvcc.current_rev
        if end and key >= end:
            self._created_error(ERR_EMPTY_RANGE)
            return
        watch_id = c.watch_id
        if watch_id == 0:  # AutoWatchID: the lowest id not in use from the stream's counter
            while self._next_id in self.watchers or self._next_id in self._compacted_ids:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        elif watch_id in self.watchers or watch_id in self._compacted_ids:
            self._created_error(ERR_DUPLICATE_ID)
            return
        filters = set(c.filters)
        w = Watcher(watch_id, key, end, c.start_revision, self,
                    no_put=_NOPUT in filters, no_delete=_NODELETE in filters)
        w.data = WatchOptions(c.prev_kv, c.fragment, c.progress_notify)
        self.watchers[watch_id] = w
        self._push(pb.WatchResponse(header=self._header(current), watch_id=watch_id, created=True))
        self._hub.add(w)

    def _created_error(self, reason: str) -> None:
        self._push(pb.WatchResponse(header=self._header(self._store.mvcc.current_rev),
                                    watch_id=INVALID_WATCH_ID, created=True, canceled=True,
                                    cancel_reason=reason))

    def cancel(self, watch_id: int) -> None:
        w = self.watchers.pop(watch_id, None)
        if w is not None:
            self._hub.remove(w)
        elif watch_id in self._compacted_ids:
            self._compacted_ids.discard(watch_id)
        else:
            return  # etcd answers nothing for an unknown id
        self._push(pb.WatchResponse(header=self._header(self._store.mvcc.current_rev),
                                    watch_id=watch_id, canceled=True))

    def request_progress(self) -> None:
        """One response with watch_id -1 once every watcher has been sent all events up to
        the revision it carries."""
        if all(w.synced for w in self.watchers.values()):
            self._push_progress_all()
        else:
            self._progress_pending = True

    def _push_progress_all(self) -> None:
        self._progress_pending = False
        self._push(pb.WatchResponse(header=self._header(self._store.mvcc.current_rev),
                                    watch_id=INVALID_WATCH_ID))

    def progress_tick(self) -> None:
        """The periodic progress notification: to synced progress_notify watchers that were
        sent no events since the last tick."""
        rev = self._store.mvcc.current_rev
        for w in self.watchers.values():
            opts = w.data
            if opts.progress_notify:
                if not opts.sent_since_tick and w.synced:
                    self._push(pb.WatchResponse(header=self._header(rev), watch_id=w.id))
                opts.sent_since_tick = False

    # -- the hub's sink interface --------------------------------------------------------------

    def has_room(self) -> bool:
        return not self._closed and len(self._queue) < MAX_QUEUED

    def deliver(self, w: Watcher, rev: int, events: list) -> bool:
        if not self.has_room():
            return self._closed  # a closed stream drops everything
        opts = w.data
        event = self._cache.event
        pb_events = [event(kv, prev, opts.prev_kv, rev) for kv, prev in events]
        resp = pb.WatchResponse(header=self._header(rev), watch_id=w.id, events=pb_events)
        opts.sent_since_tick = True
        if opts.fragment and len(pb_events) > 1 and resp.ByteSize() >= self.max_fragment_bytes:
            for part in _fragments(resp, self.max_fragment_bytes):
                self._push(part)
        else:
            self._push(resp)
        return True

    def deliver_compacted(self, w: Watcher, compact_rev: int) -> None:
        self.watchers.pop(w.id, None)
        self._compacted_ids.add(w.id)
        # etcd sends this with an empty header revision
        self._push(pb.WatchResponse(header=self._header(0), watch_id=w.id,
                                    compact_revision=compact_rev, canceled=True))

    def synced(self, w: Watcher) -> None:
        if self._progress_pending and all(x.synced for x in self.watchers.values()):
            self._push_progress_all()

    # -- the response queue --------------------------------------------------------------------

    def _header(self, rev: int) -> pb.ResponseHeader:
        return self._cache.header(rev)

    def _push(self, resp: pb.WatchResponse) -> None:
        if self._closed:
            return
        self._queue.append(resp)
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def next(self) -> pb.WatchResponse | None:
        """The next response to send, waiting for one; None once the stream is closed."""
        while not self._queue:
            if self._closed:
                return None
            self._wakeup = self._store.loop.create_future()
            await self._wakeup
            self._wakeup = None
        resp = self._queue.popleft()
        if len(self._queue) <= _DRAINED and self._hub.unsynced_count:
            self._hub.request_sync()
        return resp

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self.watchers.values():
            self._hub.remove(w)
        self.watchers.clear()
        self._compacted_ids.clear()
        self._queue.clear()
        self._wake()
        self._store.watch_streams.discard(self)


class DeliveryCache:
    """What every watcher of a revision shares, built once per store: the Events of the
    revision being delivered (a put on a key with N watchers builds its Event once, not N
    times) and recent response headers. Events are keyed by id(kv): a revision's KeyValues stay
    alive in the history while it is delivered, and the cache holds one revision at a time."""

    def __init__(self, header):
        self._make_header = header  # revision -> ResponseHeader
        self._headers: dict[int, pb.ResponseHeader] = {}
        self._events: dict[tuple[int, int], kv_pb2.Event] = {}
        self._events_rev = 0

    def header(self, rev: int) -> pb.ResponseHeader:
        header = self._headers.get(rev)
        if header is None:
            if len(self._headers) > 64:
                self._headers.clear()
            header = self._headers[rev] = self._make_header(rev)
        return header

    def event(self, kv, prev, with_prev: bool, rev: int) -> kv_pb2.Event:
        if rev != self._events_rev:
            self._events.clear()
            self._events_rev = rev
        with_prev = with_prev and prev is not None
        key = (id(kv), id(prev) if with_prev else 0)
        ev = self._events.get(key)
        if ev is None:
            if kv.version == 0:
                ev = kv_pb2.Event(type=_DELETE, kv=kv_pb2.KeyValue(key=kv.key, mod_revision=kv.mod_revision))
            else:
                ev = kv_pb2.Event(type=_PUT, kv=kv_to_pb(kv))
            if with_prev:
                ev.prev_kv.CopyFrom(kv_to_pb(prev))
            self._events[key] = ev
        return ev


def _fragments(resp: pb.WatchResponse, limit: int):
    """etcd's sendFragments: split the events over responses of < limit bytes (at least one
    event each), all but the last marked ``fragment``."""
    events = list(resp.events)
    i = 0
    while i < len(events):
        part = pb.WatchResponse(header=resp.header, watch_id=resp.watch_id, fragment=True)
        while i < len(events):
            part.events.append(events[i])
            if len(part.events) > 1 and part.ByteSize() >= limit:
                del part.events[-1]
                break
            i += 1
        if i == len(events):
            part.fragment = False
        yield part
