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
from collections.abc import Callable

from ..api import rpc_pb2 as pb
from ..limits import with_overhead
from ..mvcc.core import Watcher, deliver_change, wire
from .auth.caller import CALLER
from .ranges import range_end

MAX_QUEUED = 256  # responses; beyond this watchers on the stream fall back to catch-up
_DRAINED = MAX_QUEUED // 2
INVALID_WATCH_ID = -1  # clientv3.InvalidWatchID

_NOPUT, _NODELETE = pb.WatchCreateRequest.NOPUT, pb.WatchCreateRequest.NODELETE

ERR_EMPTY_RANGE = "mvcc: watcher range is empty"
ERR_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"


class WatchOptions:
    """What the stream remembers per watcher (etcd keeps these maps in serverWatchStream;
    prev_kv is the Watcher's own, as the hub's delivery reads it)."""

    __slots__ = ("fragment", "progress_notify")

    def __init__(self, fragment: bool, progress_notify: bool):
        self.fragment = fragment
        self.progress_notify = progress_notify


class WatchStream:
    def __init__(self, store):
        self._store = store
        self._cache: DeliveryCache = store.watch_delivery
        # serialized WatchResponses; the hub's deliver_change appends to it too
        self.queue: deque[bytes] = deque()
        # a future the reader waits on when the queue is empty (asyncio.Event would look the
        # loop up on every wait: a getpid() system call on Python 3.11)
        self._wakeup: asyncio.Future | None = None
        self._room: asyncio.Future | None = None  # the request reader's, while the queue is full
        # a sender that takes the queue when told (on_ready) instead of awaiting it
        self._on_ready: Callable[[], None] | None = None
        self.closed = False
        # a wake() since the responses were last taken: the sender knows there are some
        self.woken = False
        self._next_id = 0
        self._progress_pending = False
        self.watchers: dict[int, Watcher] = {}
        self.unsynced_watchers = 0  # of self.watchers: the hub keeps the count
        # ids of watchers canceled for compaction: as in etcd they stay taken, and a cancel of
        # them is answered, until the client cancels them
        self._compacted_ids: set[int] = set()
        self.max_fragment_bytes = with_overhead(store.max_request_bytes)
        store.watch_streams.add(self)

    @property
    def _hub(self):
        # looked up each time: a snapshot installed while serving brings a new hub
        return self._store.watch_hub

    # -- requests from the client --------------------------------------------------------------

    async def room(self) -> None:
        """Until the queue has room: the client's requests wait while their answers would
        overflow it (a client that never reads cannot grow it with control responses)."""
        while not self.closed and len(self.queue) >= MAX_QUEUED:
            self._room = self._store.loop.create_future()
            await self._room
            self._room = None

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
        store = self._store
        if store.auth.enabled or CALLER.get() is not None:
            refused = store.auth.watch_refused(key, c.range_end)
            if refused is not None:
                self._created_error(refused)
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
                    no_put=_NOPUT in filters, no_delete=_NODELETE in filters, prev_kv=c.prev_kv)
        w.data = WatchOptions(c.fragment, c.progress_notify)
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
        if not self.unsynced_watchers:
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
            if w.data.progress_notify:
                if not w.sent and w.synced:
                    self._push(pb.WatchResponse(header=self._header(rev), watch_id=w.id))
                w.sent = False

    # -- the hub's sink interface --------------------------------------------------------------

    def has_room(self) -> bool:
        return not self.closed and len(self.queue) < MAX_QUEUED

    def deliver(self, w: Watcher, rev: int, events: list) -> bool:
        if not self.has_room():
            return self.closed  # a closed stream drops everything
        cache = self._cache
        event = cache.event
        encoded = [event(kv, prev, w.prev_kv, rev) for kv, prev in events]
        header = cache.header_bytes(rev)
        w.sent = True
        if (w.data.fragment and len(encoded) > 1 and wire.watch_response_size(
                header, w.id, encoded, False) >= self.max_fragment_bytes):
            for part in _fragments(header, w.id, encoded, self.max_fragment_bytes):
                self._push_encoded(part)
        else:
            self._push_encoded(wire.watch_response(header, w.id, encoded, False))
        return True

    def deliver_compacted(self, w: Watcher, compact_rev: int) -> None:
        self.watchers.pop(w.id, None)
        self._compacted_ids.add(w.id)
        # etcd sends this with an empty header revision
        self._push(pb.WatchResponse(header=self._header(0), watch_id=w.id,
                                    compact_revision=compact_rev, canceled=True))

    def synced(self, w: Watcher) -> None:
        if self._progress_pending and not self.unsynced_watchers:
            self._push_progress_all()

    # -- the response queue --------------------------------------------------------------------

    def _header(self, rev: int) -> pb.ResponseHeader:
        return self._cache.header(rev)

    def _push(self, resp: pb.WatchResponse) -> None:
        self._push_encoded(resp.SerializeToString())

    def _push_encoded(self, resp: bytes) -> None:
        if self.closed:
            return
        self.queue.append(resp)
        self.wake()

    def wake(self) -> None:
        """Tells the sender there are responses (or the end), once until it takes them."""
        if self.woken:
            return
        self.woken = True
        if self._on_ready is not None:
            self._on_ready()
            return
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def next(self) -> pb.WatchResponse | None:
        """The next response, waiting for one; None once the stream is closed."""
        resp = await self.next_encoded()
        return None if resp is None else pb.WatchResponse.FromString(resp)

    async def next_encoded(self) -> bytes | None:
        """The next response to send, serialized (the fast path of ``next``)."""
        if not await self._queued():
            return None
        self.woken = False
        resp = self.queue.popleft()
        if len(self.queue) <= _DRAINED:
            self._drained()
        return resp

    async def next_batch(self) -> list[bytes] | None:
        """Every response queued, serialized, in order (at least one, waiting for it); None
        once the stream is closed. A sender writes them together."""
        if not await self._queued():
            return None
        self.woken = False
        queue = self.queue
        batch = list(queue)
        queue.clear()
        self._drained()
        return batch

    def on_ready(self, callback: Callable[[], None]) -> None:
        """``callback()`` whenever ``take`` has something new (responses, or the end), once
        until the next take: the sender takes the queue then, with no task waiting on it."""
        self._on_ready = callback
        if self.queue or self.closed:
            self.wake()

    def take(self) -> list[bytes] | None:
        """Every response queued, serialized, in order ([] for none); None once the stream is
        closed with none."""
        self.woken = False
        queue = self.queue
        if not queue:
            return None if self.closed else []
        batch = list(queue)
        queue.clear()
        self._drained()
        return batch

    async def _queued(self) -> bool:
        """Until a response is queued; False once the stream is closed with none."""
        while not self.queue:
            if self.closed:
                return False
            self.woken = False
            self._wakeup = self._store.loop.create_future()
            await self._wakeup
            self._wakeup = None
        return True

    def _drained(self) -> None:
        """The queue has room again: watchers behind catch up, the request reader goes on."""
        if self._hub.unsynced_count:
            self._hub.request_sync()
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for w in self.watchers.values():
            self._hub.remove(w)
        self.watchers.clear()
        self._compacted_ids.clear()
        self.queue.clear()
        self.wake()
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        self._store.watch_streams.discard(self)


class DeliveryCache:
    """What every watcher of a revision shares, built once per store: the serialized Events of
    the revision being delivered (a put on a key with N watchers encodes its Event once, not N
    times) and its header (the store keeps the last one). Events are keyed by id(kv): a
    revision's KeyValues stay alive in the history while it is delivered, and the cache holds
    one revision at a time. A revision of one change goes to its watchers' queues at once
    (``deliver_change``, the hub's fast path)."""

    def __init__(self, header_bytes):
        self.header_bytes = header_bytes  # revision -> serialized ResponseHeader
        self._events: dict[tuple[int, int], bytes] = {}
        self._events_rev = 0

    def header(self, rev: int) -> pb.ResponseHeader:
        return pb.ResponseHeader.FromString(self.header_bytes(rev))

    def deliver_change(self, watchers, rev: int, kv, prev) -> list | None:
        """The hub's deliver_change for WatchStreams: the watchers left behind, or None."""
        return deliver_change(watchers, rev, kv, prev, self.header_bytes(rev), MAX_QUEUED)

    def event(self, kv, prev, with_prev: bool, rev: int) -> bytes:
        if rev != self._events_rev:
            self._events.clear()
            self._events_rev = rev
        with_prev = with_prev and prev is not None
        key = (id(kv), id(prev) if with_prev else 0)
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = wire.event(kv, prev if with_prev else None)
        return ev


def _fragments(header: bytes, watch_id: int, events: list, limit: int):
    """etcd's sendFragments: split the events over responses of < limit bytes (at least one
    event each), all but the last marked ``fragment``."""
    base = wire.watch_response_size(header, watch_id, [], True)
    i = 0
    while i < len(events):
        start, size = i, base
        while i < len(events):
            add = wire.event_field_size(events[i])
            if i > start and size + add >= limit:
                break
            size += add
            i += 1
        yield wire.watch_response(header, watch_id, events[start:i], i < len(events))
