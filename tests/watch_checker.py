"""A checker of etcd Watch streams: what a client sees, held to etcd's documented guarantees.

Feed it every WatchResponse a stream delivers, in order (``StreamChecker.feed``); it routes
them to one ``WatchChecker`` per watch, which checks as they arrive:

* **ordered**: event revisions never decrease along the watch;
* **no duplicates**: no (revision, key) delivered twice;
* **a Txn's events together**: all events of one revision come in one WatchResponse (or one
  run of ``fragment`` responses): once a response has delivered revision R, no later one may;
* **progress never ahead of events**: after a progress notification with header revision P (a
  response with no events to this watch, or with watch_id -1 to every watch of the stream,
  etcd's answer to a progress request), no later event of the watch has revision <= P;
* **within the watch**: no event before its start revision (the created response's revision
  + 1 for a watch "from now"), none outside its key range, and an event response's header
  revision is at least its events' revision;
* **cancellation**: nothing after a cancel; a compaction cancel (``compact_revision`` set) only
  when the next revision the watch needs is below the compaction revision.

What the stream alone cannot show, gaps (events never delivered) and wrong events, is checked
against a reference: ``WatchChecker.expect(reference, upto)`` requires the watch's events to be
exactly the reference's events in its key range from its start revision through ``upto``. That
is also how "resumable from any revision" is checked: a watch (re)started from revision X must
deliver exactly the reference's events from X on. A ``Reference`` is built from a watch that
saw every write (``Reference.from_watch``), once ``WriteLog.validate`` has held that watch to
what the writers were acknowledged: every revision present, each acknowledged write's events
at the revision it was acknowledged with, and any other revision's events those of a write
whose outcome is unknown (in flight when the server was killed).

``violations`` lists what failed, ``report()`` formats them; the checker never raises.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc

from kvstore.api import kv_pb2, rpc_pb2 as pb, rpc_pb2_grpc as rpc

__all__ = ["CheckedStream", "Event", "Reference", "StreamChecker", "WatchChecker", "WriteLog"]

PUT, DELETE = "PUT", "DELETE"
_TYPES = {kv_pb2.Event.PUT: PUT, kv_pb2.Event.DELETE: DELETE}
INVALID_WATCH_ID = -1  # etcd's answer to a progress request goes to every watch of the stream
_MAX_REPORTED = 10
_SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]


@dataclass(frozen=True)
class Event:
    type: str                 # PUT | DELETE
    key: bytes
    value: bytes
    revision: int             # kv.mod_revision: the revision of the change
    create_revision: int = 0
    version: int = 0          # 0 for a delete
    lease: int = 0

    @classmethod
    def from_pb(cls, ev) -> Event:
        kv = ev.kv
        return cls(_TYPES[ev.type], kv.key, kv.value, kv.mod_revision, kv.create_revision,
                   kv.version, kv.lease)

    def __str__(self) -> str:
        return f"{self.type} {self.key!r}={self.value[:24]!r} @{self.revision}"


def _covers(key: bytes, range_end: bytes, k: bytes) -> bool:
    """etcd's watch range: range_end empty is the key alone, b"\\0" every key >= key."""
    if not range_end:
        return k == key
    return k >= key and (range_end == b"\x00" or k < range_end)


def _capped(items: list[str]) -> list[str]:
    if len(items) <= _MAX_REPORTED:
        return items
    return items[:_MAX_REPORTED] + [f"... and {len(items) - _MAX_REPORTED} more"]


class WatchChecker:
    """One watch: the responses addressed to it, checked as they arrive (module docstring)."""

    def __init__(self, key: bytes, range_end: bytes = b"", start_revision: int = 0,
                 name: str | None = None):
        self.key, self.range_end, self.start_revision = key, range_end, start_revision
        self.name = name or f"watch [{key!r}, {range_end!r}) from {start_revision or 'now'}"
        self.watch_id: int | None = None
        self.created_revision: int | None = None
        self.events: list[Event] = []
        self.responses = 0               # responses with events
        self.batches = 0                 # of which with events of several revisions (catch-up)
        self.progress = 0                # highest revision a progress notification vouched for
        self.progress_notifications = 0
        self.canceled = False
        self.cancel_reason = ""
        self.compact_revision = 0
        self.violations: list[str] = []
        self._last_rev = 0               # revision of the last event delivered
        self._seen: set[tuple[int, bytes]] = set()
        self._fragments: list = []       # events of fragment responses awaiting their last part

    # -- what the watch has shown ---------------------------------------------------------------
    @property
    def start(self) -> int:
        """The first revision this watch must deliver (0 until known)."""
        if self.start_revision:
            return self.start_revision
        return 0 if self.created_revision is None else self.created_revision + 1

    @property
    def last_revision(self) -> int:
        """The revision of the last event delivered (0 if none)."""
        return self._last_rev

    @property
    def covered(self) -> int:
        """The revision through which this watch has delivered everything: its last event's,
        or a later progress notification's (where a resumed watch may start, plus one)."""
        return max(self._last_rev, self.progress, self.start - 1)

    def covers(self, key: bytes) -> bool:
        return _covers(self.key, self.range_end, key)

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        if self.ok:
            return f"{self.name}: ok ({len(self.events)} events)"
        return "\n".join([f"{self.name}: {len(self.violations)} violation(s)",
                          *(f"  {v}" for v in _capped(self.violations))])

    def _bad(self, what: str) -> None:
        self.violations.append(what)

    # -- feeding ------------------------------------------------------------------------------
    def feed(self, resp) -> None:
        """One WatchResponse addressed to this watch (or, watch_id -1, to every watch)."""
        rev = resp.header.revision
        if resp.created:
            if self.created_revision is not None:
                self._bad(f"created twice (watch id {resp.watch_id})")
            self.watch_id, self.created_revision = resp.watch_id, rev
            if resp.canceled:
                self.canceled, self.cancel_reason = True, resp.cancel_reason
            return
        if self.created_revision is None:
            self._bad(f"a response before the watch was created: {_brief(resp)}")
        if self.canceled:
            self._bad(f"a response after the watch was canceled ({self.cancel_reason or 'compacted'}): "
                      f"{_brief(resp)}")
            return
        if resp.compact_revision:
            self._compacted(resp)
            return
        if resp.canceled:
            self.canceled, self.cancel_reason = True, resp.cancel_reason or "canceled"
            if resp.events:
                self._bad(f"a cancel response carries events: {_brief(resp)}")
            return
        if resp.fragment:
            self._fragments.extend(resp.events)
            return
        events = self._fragments + list(resp.events)
        self._fragments = []
        if not events:
            self.progress_notify(rev)
            return
        self._events(rev, [Event.from_pb(ev) for ev in events])

    def progress_notify(self, revision: int) -> None:
        """A progress notification: every event up to ``revision`` has been delivered."""
        if self.canceled:
            return
        self.progress_notifications += 1
        self.progress = max(self.progress, revision)

    def _compacted(self, resp) -> None:
        self.canceled, self.compact_revision = True, resp.compact_revision
        self.cancel_reason = f"compacted at {resp.compact_revision}"
        if not resp.canceled:
            self._bad(f"compact_revision {resp.compact_revision} without canceled")
        needed = self.covered + 1
        if needed >= resp.compact_revision:
            self._bad(f"canceled as compacted at {resp.compact_revision}, but the next revision it "
                      f"needs, {needed}, is still available")

    def _events(self, header_rev: int, events: list[Event]) -> None:
        self.responses += 1
        first_of_response = self._last_rev  # revisions <= this were delivered by earlier responses
        start = self.start
        top = 0
        for ev in events:
            r = ev.revision
            top = max(top, r)
            if r < start:
                self._bad(f"{ev}: before the watch's start revision {start}")
            if not self.covers(ev.key):
                self._bad(f"{ev}: outside the watched range")
            if (r, ev.key) in self._seen:
                self._bad(f"{ev}: duplicate (revision {r} of this key was delivered before)")
            elif r < self._last_rev:
                self._bad(f"{ev}: out of order, after an event of revision {self._last_rev}")
            elif r == first_of_response and r:
                self._bad(f"{ev}: revision {r} split over two responses (its other events came "
                          "in an earlier one)")
            if r <= self.progress:
                self._bad(f"{ev}: delivered after a progress notification at revision "
                          f"{self.progress} (the notification was ahead of events)")
            self._seen.add((r, ev.key))
            self._last_rev = max(self._last_rev, r)
            self.events.append(ev)
        if top > events[0].revision:
            self.batches += 1
        if header_rev < top:
            self._bad(f"a response's header revision {header_rev} is below its events' {top}")

    # -- against a reference --------------------------------------------------------------------
    def expect(self, reference: Reference, upto: int | None = None) -> bool:
        """The watch delivered exactly the reference's events in its range from its start
        revision through ``upto`` (default: what the watch covered), and has covered ``upto``
        (a gap at the end is a gap too). Adds violations; returns whether it held."""
        upto = self.covered if upto is None else upto
        before = len(self.violations)
        if self.covered < upto and not self.canceled:
            self._bad(f"covered revisions only through {self.covered}, not {upto}")
        start = self.start
        if start < reference.first:
            self._bad(f"starts at {start}, before the reference ({reference.first}..)")
            start = reference.first
        if upto > reference.last:
            self._bad(f"expected through {upto}, beyond the reference (..{reference.last})")
            upto = reference.last
        want = [ev for ev in reference.between(start, upto) if self.covers(ev.key)]
        got = [ev for ev in self.events if start <= ev.revision <= upto]
        if got != want:
            got_set, want_set = set(got), set(want)
            missing = [ev for ev in want if ev not in got_set]
            extra = [ev for ev in got if ev not in want_set]
            if missing:
                revs = sorted({ev.revision for ev in missing})
                self._bad(f"gap: {len(missing)} event(s) never delivered, at revisions "
                          f"{_ranges(revs)}; first: {missing[0]}")
            if extra:
                self._bad(f"{len(extra)} event(s) the reference does not have; first: {extra[0]}"
                          + _alternative(extra[0], reference))
            if not missing and not extra:
                self._bad("the events differ from the reference in order or multiplicity")
        return len(self.violations) == before

    def require_every_revision(self, upto: int | None = None) -> bool:
        """Every revision from the start through ``upto`` has an event: true of a watch whose
        range holds every key written (each revision is a write that changed a key)."""
        upto = self.covered if upto is None else upto
        have = {ev.revision for ev in self.events}
        missing = [r for r in range(max(self.start, 1), upto + 1) if r not in have]
        if missing:
            self._bad(f"gap: no event at revision(s) {_ranges(missing)}")
        return not missing


def _brief(resp) -> str:
    return (f"watch_id={resp.watch_id} rev={resp.header.revision} events={len(resp.events)} "
            f"created={resp.created} canceled={resp.canceled} compact={resp.compact_revision}")


def _ranges(revs: list[int]) -> str:
    out, i = [], 0
    while i < len(revs) and len(out) < 8:
        j = i
        while j + 1 < len(revs) and revs[j + 1] == revs[j] + 1:
            j += 1
        out.append(str(revs[i]) if i == j else f"{revs[i]}-{revs[j]}")
        i = j + 1
    return ", ".join(out) + (" ..." if i < len(revs) else "")


def _alternative(ev: Event, reference: Reference) -> str:
    there = [e for e in reference.by_rev.get(ev.revision, ()) if e.key == ev.key]
    return f" (the reference has {there[0]})" if there else ""


class StreamChecker:
    """The WatchCheckers of one Watch stream, fed every response it delivers in order.
    Register each watch (``add``) before sending its create request: created responses come
    back in the order of the requests."""

    def __init__(self, name: str = "stream"):
        self.name = name
        self.watches: dict[int, WatchChecker] = {}
        self._creating: deque[WatchChecker] = deque()
        self.all: list[WatchChecker] = []
        self.violations: list[str] = []   # the stream's own: unexpected responses

    def add(self, checker: WatchChecker) -> WatchChecker:
        self._creating.append(checker)
        self.all.append(checker)
        return checker

    def feed(self, resp) -> None:
        if resp.created:
            if not self._creating:
                self.violations.append(f"a created response nobody asked for: {_brief(resp)}")
                return
            w = self._creating.popleft()
            w.feed(resp)
            if not resp.canceled:
                if resp.watch_id in self.watches and not self.watches[resp.watch_id].canceled:
                    self.violations.append(f"watch id {resp.watch_id} handed out twice")
                self.watches[resp.watch_id] = w
            return
        if resp.watch_id == INVALID_WATCH_ID and not resp.events and not resp.canceled:
            for w in self.watches.values():       # a progress request's answer: every watch
                w.progress_notify(resp.header.revision)
            return
        w = self.watches.get(resp.watch_id)
        if w is None:
            if resp.canceled:
                return  # etcd answers a cancel of an id it no longer has (after a compaction)
            self.violations.append(f"a response for an unknown watch: {_brief(resp)}")
            return
        w.feed(resp)

    @property
    def ok(self) -> bool:
        return not self.violations and all(w.ok for w in self.all)

    def report(self) -> str:
        lines = [f"{self.name}: {v}" for v in _capped(self.violations)]
        lines += [w.report() for w in self.all if not w.ok]
        return "\n".join(lines) or f"{self.name}: ok"


@dataclass
class Reference:
    """The events of every revision in [first, last] (of the keys the checked watches cover)."""

    first: int
    last: int
    by_rev: dict[int, tuple[Event, ...]] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: Iterable[Event], first: int, last: int) -> Reference:
        by_rev: dict[int, list[Event]] = {}
        for ev in events:
            if first <= ev.revision <= last:
                by_rev.setdefault(ev.revision, []).append(ev)
        return cls(first, last, {r: tuple(evs) for r, evs in by_rev.items()})

    @classmethod
    def from_watch(cls, *parts: WatchChecker, upto: int) -> Reference:
        """From a watch that saw every write, possibly resumed (``parts`` in order, each from
        where the one before it stopped): its events from the first part's start through
        ``upto``. Check it first (``WriteLog.validate``)."""
        events = [ev for w in parts for ev in w.events]
        return cls.from_events(events, parts[0].start, upto)

    def between(self, lo: int, hi: int) -> list[Event]:
        return [ev for r in range(lo, hi + 1) for ev in self.by_rev.get(r, ())]


@dataclass
class Write:
    """One write request as its client knows it: its ops, and then its outcome."""

    ops: list[tuple]          # ("put", key, value) | ("delete", key, range_end)
    status: str = "pending"   # "ok" | "unknown" (in flight, or failed without an answer) | "rejected"
    revision: int = 0         # the header revision it was acknowledged with
    events: list[tuple] = field(default_factory=list)  # acknowledged: (type, key, value) in order


class WriteLog:
    """What writers were acknowledged, to hold a watch that saw every write to it."""

    def __init__(self) -> None:
        self.writes: list[Write] = []

    def call(self, ops: list[tuple]) -> Write:
        w = Write(list(ops))
        self.writes.append(w)
        return w

    @staticmethod
    def ok(w: Write, revision: int, deleted: list[list[bytes]]) -> None:
        """Acknowledged at ``revision``; ``deleted``: for each delete op in order, the keys it
        deleted (its response's prev_kvs). A write that changed nothing (deletes of absent keys
        only) creates no revision: pass ``revision`` 0 (etcd answers with the current one)."""
        w.status, w.revision = "ok", revision
        dels = iter(deleted)
        for op in w.ops:
            if op[0] == "put":
                w.events.append((PUT, op[1], op[2]))
            else:
                w.events.extend((DELETE, k, b"") for k in next(dels))
        if not w.events:
            w.revision = 0

    @staticmethod
    def unknown(w: Write) -> None:
        w.status = "unknown"

    @staticmethod
    def rejected(w: Write) -> None:
        """Answered, and it changed nothing (a Txn's compare failed)."""
        w.status = "rejected"

    @property
    def acknowledged(self) -> list[Write]:
        return [w for w in self.writes if w.status == "ok" and w.revision]

    def validate(self, *parts: WatchChecker, upto: int, every_revision: bool = True) -> list[str]:
        """The events of a watch that covers every key written, possibly resumed (``parts``
        in order, each from where the one before it got to) from its start through ``upto``:
        each acknowledged write's events at its revision, every other revision's those of one
        write whose outcome is unknown, each at most once; and (``every_revision``: nothing
        else writes to the store) an event at every revision. Returns the violations (also
        added to the last part)."""
        out: list[str] = []
        start = parts[0].start
        by_rev: dict[int, list[Event]] = {}
        for w in parts:
            for ev in w.events:
                if ev.revision <= upto:
                    by_rev.setdefault(ev.revision, []).append(ev)
        if every_revision:
            missing = [r for r in range(start, upto + 1) if r not in by_rev]
            if missing:
                out.append(f"gap: no event at revision(s) {_ranges(missing)}")
        acked: dict[int, Write] = {}
        for w in self.acknowledged:
            if w.revision in acked:
                out.append(f"two writes acknowledged with revision {w.revision}: "
                           f"{acked[w.revision].events} and {w.events}")
            acked[w.revision] = w
        # writes of unknown outcome, by the first event they would make (a put's), or none
        candidates: dict[tuple | None, list[Write]] = {}
        for w in self.writes:
            if w.status in ("unknown", "pending") and w.ops:
                op = w.ops[0]
                candidates.setdefault((PUT, op[1], op[2]) if op[0] == "put" else None, []).append(w)
        used: set[int] = set()
        for r in sorted(by_rev):
            got = [(ev.type, ev.key, ev.value) for ev in by_rev[r]]
            w = acked.get(r)
            if w is not None:
                if got != w.events:
                    out.append(f"revision {r}: events {got} but the write acknowledged with it "
                               f"made {w.events}")
                continue
            match = next((u for u in [*candidates.get(got[0], ()), *candidates.get(None, ())]
                          if id(u) not in used and _could_make(u, got)), None)
            if match is None:
                out.append(f"revision {r}: events {got[:4]} match no write that was acknowledged "
                           "with it or whose outcome is unknown")
            else:
                used.add(id(match))
        lost = [w for r, w in acked.items() if start <= r <= upto and r not in by_rev]
        if lost:
            out.append(f"{len(lost)} acknowledged write(s) missing from the watch, e.g. "
                       f"revision {lost[0].revision}: {lost[0].events}")
        out = _capped(out)
        parts[-1].violations.extend(out)
        return out


def _could_make(w: Write, got: list[tuple]) -> bool:
    """Whether the write ``w`` (outcome unknown) produces the events ``got``: its puts in order,
    each delete op any keys of its range in key order."""
    i = 0
    for op in w.ops:
        if op[0] == "put":
            if i >= len(got) or got[i] != (PUT, op[1], op[2]):
                return False
            i += 1
        else:
            key, end = op[1], op[2]
            prev = None
            while (i < len(got) and got[i][0] == DELETE and _covers(key, end, got[i][1])
                   and (prev is None or got[i][1] > prev)):
                prev = got[i][1]
                i += 1
    return i == len(got) and bool(got)


class CheckedStream:
    """A Watch stream on grpcio's asyncio client, every response it delivers fed to a
    StreamChecker; optionally a slow reader (a pause after each response, a small HTTP/2
    window)."""

    def __init__(self, endpoint: str, name: str, slow: float = 0.0):
        self.checker = StreamChecker(name)
        self.slow = slow
        self.channel = grpc.aio.insecure_channel(endpoint, options=_SMALL_WINDOW if slow else [])
        self.call = rpc.WatchStub(self.channel).Watch()
        self.ended: Exception | None = None
        self.last_response = asyncio.get_running_loop().time()  # with events, or a create request
        # grpcio's stream takes one write at a time: another one started meanwhile (a progress
        # ping beside a create request) fails with GRPC_CALL_ERROR_TOO_MANY_OPERATIONS
        self._writing = asyncio.Lock()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                resp = await self.call.read()
                if resp is grpc.aio.EOF:
                    return
                self.checker.feed(resp)
                if resp.events or resp.created:
                    self.last_response = asyncio.get_running_loop().time()
                if self.slow:
                    await asyncio.sleep(self.slow)
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as e:
            self.ended = e

    async def watch(self, key: bytes, range_end: bytes = b"", start: int = 0, **kw) -> WatchChecker:
        w = self.checker.add(WatchChecker(key, range_end, start))
        self.last_response = asyncio.get_running_loop().time()
        async with self._writing:
            await self.call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(
                key=key, range_end=range_end, start_revision=start, **kw)))
        return w

    async def progress(self) -> None:
        async with self._writing:
            await self.call.write(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    async def settle(self, upto: int, timeout: float = 60.0) -> None:
        """Waits until every watch of the stream has covered ``upto`` (or ended), asking for
        progress whenever the stream has delivered no events for a while (the writes have stopped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(not w.canceled and w.covered < upto for w in self.checker.all):
            assert loop.time() < deadline, (
                f"{self.checker.name}: not caught up to {upto}: "
                f"{[(w.name, w.covered) for w in self.checker.all]}")
            assert self.ended is None, f"{self.checker.name} ended: {self.ended}"
            if loop.time() - self.last_response > 0.5:
                await self.progress()
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.channel.close()
