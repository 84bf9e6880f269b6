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

from ..api import rpc_pb2 as pb
from ..limits import with_overhead
from ..mvcc.core import wire
from ..mvcc.watch_hub import Watcher
from .auth.caller import CALLER
from .ranges import range_end

MAX_QUEUED = 256  # responses; beyond this watchers on the stream fall back to catch-up
_DRAINED = MAX_QUEUED // 2
INVALID_WATCH_ID = -1  # clientv3.InvalidWatchID

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
        self._cache: DeliveryCache = store.watch_delivery
        self._queue: deque[bytes] = deque()  # serialized WatchResponses
        # a future the reader waits on when the queue is empty (asyncio.Event would look the
        # loop up on every wait: a getpid() system call on Python 3.11)
        self._wakeup: asyncio.Future | None = None
        self._room: asyncio.Future | None = None  # the request reader's, while the queue is full
        self._closed = False
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
        while not self._closed and len(self._queue) >= MAX_QUEUED:
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
        cache = self._cache
        event = cache.event
        encoded = [event(kv, prev, opts.prev_kv, rev) for kv, prev in events]
        header = cache.header_bytes(rev)
        opts.sent_since_tick = True
        if (opts.fragment and len(encoded) > 1 and wire.watch_response_size(
                header, w.id, encoded, False) >= self.max_fragment_bytes):
            for part in _fragments(header, w.id, encoded, self.max_fragment_bytes):
                self._push_encoded(part)
        else:
            self._push_encoded(wire.watch_response(header, w.id, encoded, False))
        return True

    def deliver_one(self, watchers: list, rev: int, kv, prev) -> int:
        """A revision of one change to several of this stream's watchers (``deliver`` for each,
        with the header and the event looked up once): how many, from the first, got it. A
        closed stream takes (drops) them all."""
        if self._closed:
            return len(watchers)
        queue = self._queue
        room = MAX_QUEUED - len(queue)
        if room <= 0:
            return 0
        cache = self._cache
        header = cache.header_bytes(rev)
        plain = with_prev = None
        response = wire.watch_response
        sent = 0
        for w in watchers[:room]:
            opts = w.data
            if opts.prev_kv:
                if with_prev is None:
                    with_prev = [cache.event(kv, prev, True, rev)]
                events = with_prev
            else:
                if plain is None:
                    plain = [cache.event(kv, prev, False, rev)]
                events = plain
            opts.sent_since_tick = True
            queue.append(response(header, w.id, events, False))
            sent += 1
        self._wake()
        return sent

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
        if self._closed:
            return
        self._queue.append(resp)
        self._wake()

    def _wake(self) -> None:
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
        resp = self._queue.popleft()
        if len(self._queue) <= _DRAINED:
            self._drained()
        return resp

    async def next_batch(self) -> list[bytes] | None:
        """Every response queued, serialized, in order (at least one, waiting for it); None
        once the stream is closed. A sender writes them together."""
        if not await self._queued():
            return None
        queue = self._queue
        batch = list(queue)
        queue.clear()
        self._drained()
        return batch

    async def _queued(self) -> bool:
        """Until a response is queued; False once the stream is closed with none."""
        while not self._queue:
            if self._closed:
                return False
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
        if self._closed:
            return
        self._closed = True
        for w in self.watchers.values():
            self._hub.remove(w)
        self.watchers.clear()
        self._compacted_ids.clear()
        self._queue.clear()
        self._wake()
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        self._store.watch_streams.discard(self)


class DeliveryCache:
    """What every watcher of a revision shares, built once per store: the serialized Events of
    the revision being delivered (a put on a key with N watchers encodes its Event once, not N
    times) and its header (the store keeps the last one). Events are keyed by id(kv): a
    revision's KeyValues stay alive in the history while it is delivered, and the cache holds
    one revision at a time."""

    def __init__(self, header_bytes):
        self.header_bytes = header_bytes  # revision -> serialized ResponseHeader
        self._events: dict[tuple[int, int], bytes] = {}
        self._events_rev = 0

    def header(self, rev: int) -> pb.ResponseHeader:
        return pb.ResponseHeader.FromString(self.header_bytes(rev))

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
