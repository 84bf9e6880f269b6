"""Differential tests of the Watch and Lease services: kvstore against a real etcd 3.4, over gRPC.

Builds on tests/differential/harness.py: every KV and unary Lease request goes to both servers
through a ``Sequence`` (logical revisions, identity fields dropped; see the harness). On top:

* Watch streams. ``s.watch()`` opens one bidi Watch stream on each server; requests are sent to
  both; each server's responses are collected by a reader thread. After every step of the
  sequence (a write, a watch request...) the test waits until both servers have delivered
  (response counts equal and unchanged for a short while; after a create with a start
  revision at least etcd's 100 ms catch-up loop) and compares what each stream received,
  **per watch id, in order**: whole responses (created/canceled flags, cancel reasons,
  compact_revision, fragments, every event with its kv and prev_kv, header revision), each
  response as a unit, so the events of one txn must arrive in one response in etcd's order.
  Responses of different watch ids are not ordered against each other (etcd sends them in
  map order), and watch_id -1 (errors, progress) is a bucket of its own.
* Lease ids. Ids a server chooses (LeaseGrant with ID 0) differ: each gets a logical alias
  (``ALIAS_BASE + n``, n-th server-chosen grant of the sequence) that requests use and
  responses are translated back to, everywhere a lease id appears (lease responses, kv.lease in
  ranges, txns and watch events). Client-chosen ids are used as they are.
* Time. Remaining TTLs may differ by a second; LeaseLeases is compared as a set (etcd sorts
  by remaining TTL with an unstable sort; test_lease_leases_ordered_by_remaining_ttl checks the
  order), TimeToLive keys as a set (etcd: map order). Where response boundaries depend on
  timing or deliberately differ (a slow reader's catch-up, kvstore's catch-up batches bounded
  in bytes), a watch id is compared revision by revision instead (``WatchPair.logical_ids``:
  fragments joined, responses split per revision); periodic progress notifications, whose
  number depends on when each server's ticker fires, count once per run of identical ones.

A sequence's leases are revoked after each test, so no expiry lands in a later test.
Known difference kept as a failing test: test_watch_negative_start_revision (kvstore answers as
etcd >= 3.6 does).
"""
from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest
from google.protobuf import text_format

from differential.generate import Op, SequenceGenerator, cmp, delete, prefix_end, put, rng, txn
from differential.harness import (
    DiffPair,
    Mismatch,
    Outcome,
    Sequence,
    _indent,
    abbreviate,
    normalize,
    start_both,
)
from kvstore.api import kv_pb2, rpc_pb2 as pb, rpc_pb2_grpc
from procs import EtcdProcess, KvstoreProcess

pytestmark = pytest.mark.timeout(120)

OK = None
NOT_FOUND = grpc.StatusCode.NOT_FOUND
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

ALIAS_BASE = 0x7A1A50000  # logical ids of server-chosen leases
MIN_TTL = 2               # both servers' minimum lease TTL (etcd: ceil(1.5 * election timeout))
MAX_TTL = 9_000_000_000   # etcd's MaxLeaseTTL

QUIET = 0.04              # s without a new response (counts equal on both) = delivered
UNBALANCED_QUIET = 1.0    # ... while one server has sent more than the other
CATCH_UP_WAIT = 0.2       # etcd catches unsynced watchers up every 100 ms
SETTLE_LIMIT = 10.0
STREAM_OPTIONS = [("grpc.max_receive_message_length", -1)]
BIG = 100_000             # a large value: 14 of them fill most of a request


# -- lease ids ----------------------------------------------------------------------------------

def map_lease_ids(msg, mapping: dict) -> None:
    """Replaces (in place) every lease id in ``msg`` found in ``mapping``, at any depth."""
    if not mapping:
        return
    name = type(msg).__name__
    if isinstance(msg, (kv_pb2.KeyValue, pb.PutRequest)) or (
            isinstance(msg, pb.Compare) and msg.WhichOneof("target_union") == "lease"):
        if msg.lease in mapping:
            msg.lease = mapping[msg.lease]
    elif name.startswith("Lease") and hasattr(msg, "ID"):
        if msg.ID in mapping:
            msg.ID = mapping[msg.ID]
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        for item in (value if fd.is_repeated else [value]):
            map_lease_ids(item, mapping)


def _copy(msg):
    c = type(msg)()
    c.CopyFrom(msg)
    return c


def _wire(msg) -> bytes:
    return msg.SerializeToString(deterministic=True)


def _text(msg) -> str:
    body = text_format.MessageToString(msg, as_one_line=True)
    return abbreviate(f"{type(msg).__name__} {{{body}}}")


# -- streams ------------------------------------------------------------------------------------

class ServerStream:
    """One bidi stream to one server: requests queued in, responses collected by a thread."""

    def __init__(self, server: str, call_factory):
        self.server = server
        self._requests: queue.Queue = queue.Queue()
        self.responses: list = []
        self.per_id: dict[int, int] = {}  # responses received per watch id (Watch streams)
        self.end: tuple[str, str] | None = None  # (status code name, details) once it ended
        self.call = call_factory(iter(self._requests.get, None))
        self._gate = threading.Event()  # cleared: the reader stops reading (a slow client)
        self._gate.set()
        self._thread = threading.Thread(target=self._read, daemon=True,
                                        name=f"{server}-stream-reader")
        self._thread.start()

    def pause(self) -> None:
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()

    def _gated(self):
        it = iter(self.call)
        while True:
            self._gate.wait()
            try:
                yield next(it)
            except StopIteration:
                return

    def _read(self) -> None:
        try:
            for resp in self._gated():
                wid = getattr(resp, "watch_id", None)
                self.per_id[wid] = self.per_id.get(wid, 0) + 1
                self.responses.append(resp)
            self.end = ("OK", "")
        except grpc.RpcError as e:
            self.end = (e.code().name, e.details() or "")
        except Exception as e:  # noqa: BLE001 - reported as the stream's end
            self.end = ("CLIENT_ERROR", repr(e))

    def send(self, request) -> None:
        self._requests.put(request)

    @property
    def count(self) -> int:
        return len(self.responses) + (self.end is not None)

    def wait_count(self, n: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.002)
        return self.count >= n

    def close(self) -> None:
        self._requests.put(None)
        self.call.cancel()
        self._gate.set()
        self._thread.join(5)


class WatchPair:
    """A Watch stream on each server, driven in lockstep by a WatchLeaseSequence."""

    def __init__(self, seq: WatchLeaseSequence, name: str, channel_options=None):
        self.seq = seq
        self.name = name
        self.streams = {}
        for ep in (seq.pair.etcd, seq.pair.kvstore):
            channel = seq.stream_channel(ep.name, channel_options)
            stub = rpc_pb2_grpc.WatchStub(channel)
            self.streams[ep.name] = ServerStream(
                ep.name, lambda it, stub=stub: stub.Watch(it, metadata=(("hasleader", "true"),)))
        self.closed = False
        # watch ids compared as the revisions they deliver, not response by response (see
        # logical()); progress notifications counted once per run (their number depends on
        # when each server's ticker fires)
        self.logical_ids: set[int] = set()
        self.logical_headers = True  # False: header revisions of logical ids not compared
        self.collapse_progress = False

    # -- requests ------------------------------------------------------------------------------

    def send(self, request: pb.WatchRequest, min_wait: float = 0.0) -> None:
        self.seq.ops.append(Op(f"Watch[{self.name}]", request))
        for server, stream in self.streams.items():
            r = _copy(request)
            c = r.create_request
            if r.WhichOneof("request_union") == "create_request" and c.start_revision > 0:
                c.start_revision += self.seq.deltas[server]
            stream.send(r)
        self.seq.check_watches(min_wait)

    def create(self, key, range_end=b"", **kw) -> list:
        """Creates a watch on both; returns etcd's (comparable) new responses for any id."""
        before = len(self.streams["etcd"].responses)
        c = pb.WatchCreateRequest(key=_b(key), range_end=_b(range_end), **kw)
        self.send(pb.WatchRequest(create_request=c),
                  min_wait=CATCH_UP_WAIT if c.start_revision else 0.0)
        return self.comparable("etcd")[before:]

    def cancel(self, watch_id: int) -> list:
        before = len(self.streams["etcd"].responses)
        self.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))
        return self.comparable("etcd")[before:]

    def progress(self) -> list:
        before = len(self.streams["etcd"].responses)
        self.send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
        return self.comparable("etcd")[before:]

    # -- responses -----------------------------------------------------------------------------

    def comparable(self, server: str) -> list:
        """The server's responses so far, normalized: logical revisions, no identity,
        logical lease ids."""
        delta = self.seq.deltas[server]
        out = []
        for resp in list(self.streams[server].responses):
            r = normalize(resp, delta)
            if r.compact_revision > 0:
                r.compact_revision -= delta
            map_lease_ids(r, self.seq.to_logical[server])
            out.append(r)
        return out

    def by_watch_id(self, server: str) -> dict:
        buckets: dict[int, list] = {}
        for r in self.comparable(server):
            buckets.setdefault(r.watch_id, []).append(r)
        return buckets

    def logical(self, server: str) -> dict:
        """by_watch_id, with fragments joined and every response with events split into one
        response per revision (header, id and flags kept)."""
        out: dict[int, list] = {}
        for wid, resps in self.by_watch_id(server).items():
            items = out[wid] = []
            joined: list = []
            for r in resps:
                joined.extend(r.events)
                if r.fragment:
                    continue
                if not joined:
                    items.append(r)
                    continue
                group: list = []
                for e in joined + [None]:
                    if group and (e is None or e.kv.mod_revision != group[-1].kv.mod_revision):
                        g = pb.WatchResponse(header=r.header, watch_id=r.watch_id,
                                             created=r.created, canceled=r.canceled,
                                             compact_revision=r.compact_revision,
                                             cancel_reason=r.cancel_reason, events=group)
                        items.append(g)
                        group = []
                    if e is not None:
                        group.append(e)
                joined = []
        return out

    def _comparable_buckets(self, server: str) -> dict:
        buckets = self.by_watch_id(server)
        if self.logical_ids:
            logical = self.logical(server)
            for wid in self.logical_ids & set(buckets):
                buckets[wid] = logical[wid]
                if not self.logical_headers:
                    for r in buckets[wid]:
                        r.header.revision = 0
        if self.collapse_progress:
            for wid, resps in buckets.items():
                kept = []
                for r in resps:
                    is_progress = not (r.events or r.created or r.canceled or r.fragment)
                    if is_progress and kept and _wire(kept[-1]) == _wire(r):
                        continue
                    kept.append(r)
                buckets[wid] = kept
        return buckets

    def responses(self, watch_id: int) -> list:
        """etcd's comparable responses for one watch id (kvstore's are the same, or the test
        has failed already)."""
        return self.by_watch_id("etcd").get(watch_id, [])

    def events(self, watch_id: int) -> list:
        return [ev for r in self.responses(watch_id) for ev in r.events]

    def difference(self) -> str | None:
        want, got = self._comparable_buckets("etcd"), self._comparable_buckets("kvstore")
        lines = []
        for wid in sorted(set(want) | set(got)):
            a = [_wire(r) for r in want.get(wid, [])]
            b = [_wire(r) for r in got.get(wid, [])]
            if a == b:
                continue
            how = " (compared by revision: fragments joined, responses split)" \
                if wid in self.logical_ids else ""
            lines.append(f"watch id {wid}{how}:")
            n = max(len(a), len(b))
            for i in range(n):
                ra = want.get(wid, [])[i] if i < len(a) else None
                rb = got.get(wid, [])[i] if i < len(b) else None
                mark = "  " if (ra is not None and rb is not None and _wire(ra) == _wire(rb)) \
                    else "!!"
                lines.append(f" {mark} #{i} etcd:    {_text(ra) if ra is not None else '(none)'}")
                if mark == "!!":
                    lines.append(f" {mark} #{i} kvstore: "
                                 f"{_text(rb) if rb is not None else '(none)'}")
        e_end, k_end = self.streams["etcd"].end, self.streams["kvstore"].end
        if e_end != k_end:
            lines.append(f"stream ended: etcd {e_end}, kvstore {k_end}")
        return "\n".join(lines) if lines else None

    def settle_count(self, server: str) -> int:
        """Responses so far, but for the watch ids compared by revision (whose response
        counts may differ) and with the stream's end."""
        st = self.streams[server]
        n = st.count
        for wid in self.logical_ids:
            n -= st.per_id.get(wid, 0)
        return n

    def compared(self, watch_id: int) -> list:
        """etcd's responses for a watch id in the form compared."""
        return self._comparable_buckets("etcd").get(watch_id, [])

    def half_close(self) -> None:
        """Ends the request side of both streams (the client sends no more requests)."""
        self.seq.ops.append(Op(f"Watch[{self.name}]", pb.WatchRequest()))  # as a marker
        for st in self.streams.values():
            st.send(None)
        self.seq.check_watches()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for s in self.streams.values():
                s.close()


class KeepAlivePair:
    """A LeaseKeepAlive stream on each server."""

    def __init__(self, seq: WatchLeaseSequence):
        self.seq = seq
        self.streams = {}
        for ep in (seq.pair.etcd, seq.pair.kvstore):
            stub = rpc_pb2_grpc.LeaseStub(seq.stream_channel(ep.name))
            self.streams[ep.name] = ServerStream(ep.name, stub.LeaseKeepAlive)

    def keepalive(self, lease_id: int, header: bool = True) -> pb.LeaseKeepAliveResponse:
        """One request on both streams; their answers compared; etcd's returned.
        ``header=False``: header revisions not compared (a lease may expire meanwhile, on
        each server at its own moment)."""
        seq = self.seq
        request = pb.LeaseKeepAliveRequest(ID=lease_id)
        op = Op("LeaseKeepAlive", request)
        index = len(seq.ops)
        seq.ops.append(op)
        outs = {}
        for server, stream in self.streams.items():
            n = len(stream.responses)
            r = _copy(request)
            map_lease_ids(r, seq.to_real[server])
            stream.send(r)
            if not stream.wait_count(n + 1):
                raise AssertionError(f"{server}: no LeaseKeepAlive answer in 10 s\n"
                                     f"{seq.transcript()}")
            if len(stream.responses) <= n:
                outs[server] = Outcome(code=grpc.StatusCode.UNKNOWN,
                                       details=f"stream ended: {stream.end}")
                continue
            resp = normalize(stream.responses[n], seq.deltas[server])
            map_lease_ids(resp, seq.to_logical[server])
            if not header:
                resp.header.revision = 0
            outs[server] = Outcome(resp)
        want, got = outs["etcd"], outs["kvstore"]
        if want.text() != got.text():
            raise Mismatch(seq._report(index, op, want, got))
        seq.check_watches()
        return want.response

    def close(self) -> None:
        for s in self.streams.values():
            s.close()


# -- the sequence -------------------------------------------------------------------------------

class WatchLeaseSequence(Sequence):
    """A harness Sequence that also speaks Lease (with logical lease ids) and keeps Watch
    streams compared after every step."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.to_real: dict[str, dict[int, int]] = {"etcd": {}, "kvstore": {}}
        self.to_logical: dict[str, dict[int, int]] = {"etcd": {}, "kvstore": {}}
        self._server_grants = {"etcd": 0, "kvstore": 0}
        self.watches: list[WatchPair] = []
        self.keepalives: list[KeepAlivePair] = []
        self._channels: dict[str, grpc.Channel] = {}
        # False: watches are compared only by explicit check_watches(settle=False) calls, after
        # the test waited itself (for responses driven by timers rather than requests)
        self.auto_check = True

    def stream_channel(self, server: str, options=None) -> grpc.Channel:
        """A channel for streams (no receive limit), one per server and sequence; with
        ``options``, a channel of its own."""
        key = (server, tuple(options or ()))
        if key not in self._channels:
            ep = getattr(self.pair, server)
            self._channels[key] = grpc.insecure_channel(ep.address,
                                                        options=STREAM_OPTIONS + list(options or ()))
        return self._channels[key]

    # -- harness hooks -------------------------------------------------------------------------

    def request_for(self, server: str, op: Op):
        r = super().request_for(server, op)
        map_lease_ids(r, self.to_real[server])
        return r

    def received(self, server: str, op: Op, outcome: Outcome) -> Outcome:
        if not outcome.ok:
            return outcome
        resp = _copy(outcome.response)
        if op.method == "LeaseGrant" and op.request.ID == 0:
            self._server_grants[server] += 1
            alias = ALIAS_BASE + self._server_grants[server]
            self.to_real[server][alias] = resp.ID
            self.to_logical[server][resp.ID] = alias
        map_lease_ids(resp, self.to_logical[server])
        if op.method == "LeaseLeases":
            ordered = sorted(resp.leases, key=lambda s: s.ID)
            del resp.leases[:]
            resp.leases.extend(ordered)
        elif op.method == "LeaseTimeToLive":
            keys = sorted(resp.keys)
            del resp.keys[:]
            resp.keys.extend(keys)
        return Outcome(resp)

    def reconcile(self, op: Op, want: Outcome, got: Outcome) -> Outcome:
        if (op.method == "LeaseTimeToLive" and want.ok and got.ok and want.response.TTL > 0
                and got.response.TTL > 0 and abs(want.response.TTL - got.response.TTL) <= 1):
            r = _copy(got.response)
            r.TTL = want.response.TTL  # the same deadline, read a moment apart
            return Outcome(r)
        return got

    def step(self, op: Op) -> Outcome:
        out = super().step(op)
        self.check_watches()
        return out

    # -- lease shorthands ----------------------------------------------------------------------

    def grant(self, ttl: int, lease_id: int = 0) -> Outcome:
        return self.step(Op("LeaseGrant", pb.LeaseGrantRequest(TTL=ttl, ID=lease_id)))

    def revoke(self, lease_id: int) -> Outcome:
        return self.step(Op("LeaseRevoke", pb.LeaseRevokeRequest(ID=lease_id)))

    def ttl(self, lease_id: int, keys: bool = False) -> Outcome:
        return self.step(Op("LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)))

    def leases(self) -> Outcome:
        return self.step(Op("LeaseLeases", pb.LeaseLeasesRequest()))

    def keepalive_stream(self) -> KeepAlivePair:
        ka = KeepAlivePair(self)
        self.keepalives.append(ka)
        return ka

    def real_lease(self, server: str, lease_id: int) -> int:
        return self.to_real[server].get(lease_id, lease_id)

    # -- watches -------------------------------------------------------------------------------

    def watch(self, channel_options=None) -> WatchPair:
        w = WatchPair(self, f"s{len(self.watches)}", channel_options)
        self.watches.append(w)
        return w

    def check_watches(self, min_wait: float = 0.0, settle: bool | None = None) -> None:
        if settle is None:
            if not self.auto_check:
                return
            settle = True
        open_ = [w for w in self.watches if not w.closed]
        if not open_:
            return
        if settle:
            self._settle(open_, min_wait)
        for w in open_:
            if w.difference() is None:
                continue
            if settle:
                self._settle(open_, 1.0, quiet=0.5)  # a late response? give both a second
            diff = w.difference()
            if diff is not None:
                raise Mismatch(
                    f"watch stream {w.name}: kvstore's responses differ from etcd's after "
                    f"request #{len(self.ops) - 1} of sequence {self.title!r} (namespace "
                    f"{self.namespace!r})\n{diff}\nsequence so far:\n"
                    f"{_indent(abbreviate(self.transcript()))}")

    @staticmethod
    def _settle(pairs, min_wait: float, quiet: float = QUIET) -> None:
        start = changed = time.monotonic()
        last = None
        while True:
            counts = [(w.settle_count("etcd"), w.settle_count("kvstore")) for w in pairs]
            now = time.monotonic()
            if counts != last:
                last, changed = counts, now
            balanced = all(a == b for a, b in counts)
            if (now - start >= min_wait
                    and now - changed >= (quiet if balanced else max(quiet, UNBALANCED_QUIET))):
                return
            if now - start > SETTLE_LIMIT:
                return
            time.sleep(0.003)

    def expired(self, *lease_ids: int) -> bool:
        """Whether both servers have revoked all these leases (TimeToLive says -1)."""
        for ep in (self.pair.etcd, self.pair.kvstore):
            for lid in lease_ids:
                out = ep.call("LeaseTimeToLive",
                              pb.LeaseTimeToLiveRequest(ID=self.real_lease(ep.name, lid)))
                assert out.ok, f"{ep.name}: {out.text()}"
                if out.response.TTL != -1:
                    return False
        return True

    def wait_expired(self, *lease_ids: int, timeout: float = 15.0) -> None:
        """Waits until both servers have revoked the leases (TimeToLive says -1)."""
        deadline = time.monotonic() + timeout
        for ep in (self.pair.etcd, self.pair.kvstore):
            for lid in lease_ids:
                real = self.real_lease(ep.name, lid)
                while True:
                    out = ep.call("LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=real))
                    assert out.ok, f"{ep.name}: {out.text()}"
                    if out.response.TTL == -1:
                        break
                    assert time.monotonic() < deadline, (
                        f"{ep.name}: lease {lid:#x} not expired after {timeout}s "
                        f"(TTL {out.response.TTL})")
                    time.sleep(0.05)
        self.check_watches(min_wait=0.2)

    def close(self) -> None:
        for w in self.watches:
            w.close()
        for ka in self.keepalives:
            ka.close()
        for ch in self._channels.values():
            ch.close()


def _b(v) -> bytes:
    return v.encode() if isinstance(v, str) else v


# -- fixtures -----------------------------------------------------------------------------------

def _require_etcd():
    if not EtcdProcess.available():
        pytest.fail("the etcd binary (Debian's etcd-server) is not installed: the differential "
                    "tests need it as the reference", pytrace=False)


def _revoke_all(pair: DiffPair) -> None:
    for ep in (pair.etcd, pair.kvstore):
        out = ep.call("LeaseLeases", pb.LeaseLeasesRequest())
        assert out.ok, out.text()
        for status in out.response.leases:
            ep.call("LeaseRevoke", pb.LeaseRevokeRequest(ID=status.ID))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    _require_etcd()
    base = tmp_path_factory.mktemp("diff-watch-lease")
    etcd, kv = EtcdProcess(base / "etcd"), KvstoreProcess(base / "kvstore")
    start_both(etcd, kv)
    pair = DiffPair(etcd.endpoint, kv.endpoint, report_dir=base)
    try:
        yield pair
    finally:
        pair.close()
        etcd.stop()
        kv.stop()


@pytest.fixture
def s(shared, request) -> WatchLeaseSequence:
    seq = shared.sequence(request.node.name, barrier=True, cls=WatchLeaseSequence)
    try:
        yield seq
    finally:
        seq.close()
        _revoke_all(shared)


def code(outcome: Outcome):
    return outcome.code


def replay(s: WatchLeaseSequence, w: WatchPair, **kw) -> None:
    """Watches the whole namespace from the first revision after the barrier, with and
    without prev_kv: a catch-up of everything the scenario did, in one response."""
    ns = (s.key(""), prefix_end(s.key("")))
    w.create(*ns, start_revision=3, prev_kv=True, **kw)
    w.create(*ns, start_revision=3, **kw)


def evs(events) -> list[tuple]:
    return [(kv_pb2.Event.EventType.Name(e.type), e.kv.key, e.kv.mod_revision) for e in events]


# -- the harness's own rules ----------------------------------------------------------------------

def test_lease_id_mapping_rules():
    kv = kv_pb2.KeyValue(key=b"k", lease=111)
    t = txn([cmp(b"k", "LEASE", "EQUAL", 111)], [put(b"k", lease=111)], [put(b"j", lease=5)])
    resp = pb.WatchResponse(events=[kv_pb2.Event(kv=kv, prev_kv=kv)])
    for msg in (t, resp, pb.LeaseLeasesResponse(leases=[pb.LeaseStatus(ID=111)])):
        map_lease_ids(msg, {111: 7})
    assert t.compare[0].lease == 7 and t.success[0].request_put.lease == 7
    assert t.failure[0].request_put.lease == 5
    assert resp.events[0].kv.lease == 7 and resp.events[0].prev_kv.lease == 7
    c = cmp(b"k", "VERSION", "EQUAL", 111)   # not a lease: untouched
    map_lease_ids(c, {111: 7})
    assert c.version == 111


# -- watch scenarios ------------------------------------------------------------------------------

def test_watch_from_now_single_range_prefix_from_key(s):
    k = s.key
    s.put(k("a"), "0")
    s.put(k("b"), "0")
    w = s.watch()
    w.create(k("a"))                                   # 0: one key
    w.create(k("a"), prefix_end(k("a")))               # 1: prefix "a"
    w.create(k("b"), k("d"))                           # 2: [b, d)
    w.create(k(""), b"\x00")                           # 3: every key from the namespace on
    w.create(k("a"), prev_kv=True)                     # 4
    w.create(b"", b"\x00")                             # 5: the whole keyspace ("" is "\0")
    w.create(b"")                                      # 6: the single key "\0"
    w.create(k("c"), k("c\x00"))                       # 7: [c, c\0) = just c
    w.create(k("a"), k("a"))                           # error: key >= range_end
    created = w.responses(0)[0]
    assert created.created and not created.canceled and created.header.revision == 4
    for key, value in [("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4"), ("c", "5"),
                       ("d", "6"), ("a", "7")]:
        s.put(k(key), value)
    s.put(k("a"), "7")                                 # same value: still an event
    s.put(k("a"), ignore_value=True, prev_kv=True)
    s.delete(k("zz"))                                  # nothing deleted: no revision, no event
    s.delete(k("a"), prev_kv=True)
    s.delete(k("a"))                                   # already gone
    s.delete(k("a"), k("c"), prev_kv=True)             # ab, abc, b: one revision, 3 events
    s.put(b"\x00", "nul")
    s.delete(b"\x00")
    s.compact(8)                                       # synced watchers do not notice
    s.put(k("a"), "again")
    assert evs(w.events(0)) == [("PUT", k("a"), 5), ("PUT", k("a"), 11), ("PUT", k("a"), 12),
                                ("PUT", k("a"), 13), ("DELETE", k("a"), 14),
                                ("PUT", k("a"), 18)]
    [delete_range] = [r for r in w.responses(3) if len(r.events) == 3]
    assert evs(delete_range.events) == [("DELETE", k("ab"), 15), ("DELETE", k("abc"), 15),
                                        ("DELETE", k("b"), 15)]


def test_watch_txn_events_in_one_response_in_order(s):
    k = s.key
    for key in ("a", "m", "z"):
        s.put(k(key), "0")
    w = s.watch()
    w.create(k(""), prefix_end(k("")), prev_kv=True)            # 0
    w.create(k(""), prefix_end(k("")))                          # 1
    w.create(k("m"), prev_kv=True)                              # 2
    w.create(k("m"), k("zz"), filters=[pb.WatchCreateRequest.NOPUT])  # 3
    s.txn(txn([], [put(k("z"), b"1"), delete(k("m")), put(k("b"), b"1"), put(k("a"), b"1")]))
    s.txn(txn([cmp(k("z"), "VALUE", "EQUAL", b"1")],
              [txn([], [put(k("m"), b"2"), delete(k("a"), prev_kv=True)]), put(k("c"), b"2"),
               rng(k(""), prefix_end(k("")))],
              [put(k("x"), b"no")]))
    s.txn(txn([cmp(k("z"), "VALUE", "EQUAL", b"nope")], [put(k("x"), b"no")],
              [delete(k("b"), k("d")), put(k("n"), b"3")]))
    s.txn(txn([], [rng(k("a"))]))                               # read-only: no event
    s.txn(txn([], [delete(k("nothing")), rng(k("a"))]))         # deletes nothing: no event
    # a "\0"-ended delete is taken literally by the duplicate check: delete all, re-put one
    s.txn(txn([], [delete(k(""), b"\x00", prev_kv=True), put(k("m"), b"4"),
                   put(k("q"), b"4")]))
    s.txn(txn([], [put(k("z"), b"5", lease=0), put(k("y"), b"5"),
                   delete(k("q")), put(k("m"), b"5")]))
    by_rev = [evs(r.events) for r in w.responses(1) if r.events]
    assert by_rev[0] == [("PUT", k("z"), 6), ("DELETE", k("m"), 6), ("PUT", k("b"), 6),
                         ("PUT", k("a"), 6)]
    assert [len(r.events) for r in w.responses(1) if r.events] == [4, 3, 3, 5, 4]
    replay(s, w)


def test_watch_filters_and_prev_kv(s):
    k = s.key
    w = s.watch()
    NOPUT, NODELETE = pb.WatchCreateRequest.NOPUT, pb.WatchCreateRequest.NODELETE
    w.create(k(""), prefix_end(k("")), filters=[NOPUT])                 # 0
    w.create(k(""), prefix_end(k("")), filters=[NODELETE], prev_kv=True)  # 1
    w.create(k(""), prefix_end(k("")), filters=[NOPUT, NODELETE])      # 2: nothing, ever
    w.create(k("a"), filters=[NODELETE, NODELETE])                     # 3
    w.create(k(""), prefix_end(k("")), filters=[NOPUT], prev_kv=True)  # 4
    s.put(k("a"), "1")
    s.put(k("a"), "2")
    s.put(k("b"), "1")
    s.delete(k("a"))
    s.txn(txn([], [put(k("a"), b"3"), delete(k("b"))]))         # one of each: filtered apart
    s.txn(txn([], [delete(k("a")), put(k("c"), b"x")]))
    assert w.responses(2)[1:] == []
    assert [len(r.events) for r in w.responses(0)[1:]] == [1, 1, 1]
    puts = w.events(1)
    assert [e.prev_kv.value for e in puts] == [b"", b"1", b"", b"", b""]
    assert [e.prev_kv.value for e in w.events(4)] == [b"2", b"1", b"3"]
    replay(s, w, filters=[pb.WatchCreateRequest.NOPUT])
    replay(s, w, filters=[pb.WatchCreateRequest.NODELETE])


def test_watch_start_revisions_and_compaction(s):
    k = s.key
    s.put(k("a"), "1")                                 # 3
    s.put(k("b"), "1")                                 # 4
    s.put(k("a"), "2")                                 # 5
    s.delete(k("b"))                                   # 6
    s.txn(txn([], [put(k("c"), b"1"), put(k("a"), b"3")]))  # 7
    s.put(k("d"), "1")                                 # 8
    # physical: etcd answers once its backend is compacted too. Without it, whether a watch
    # from the compaction revision still finds a tombstone made at that revision depends on
    # how far etcd's background compaction got (etcd issue #18089).
    s.compact(5, physical=True)
    w = s.watch()
    all_ = (k(""), prefix_end(k("")))
    w.create(k("a"), start_revision=6)                 # 0: a@7
    w.create(*all_, start_revision=5, prev_kv=True)    # 1: from the compaction point itself
    w.create(*all_, start_revision=4)                  # 2: compacted
    compacted = w.responses(2)
    assert [(r.created, r.canceled, r.compact_revision) for r in compacted] == [
        (True, False, 0), (False, True, 5)]
    w.create(*all_, start_revision=1)                  # 3: compacted
    w.create(*all_, start_revision=8)                  # 4: the current revision
    w.create(*all_, start_revision=9)                  # 5: the next one: nothing yet
    w.create(*all_, start_revision=12)                 # 6: the future
    w.create(k("a"), start_revision=2, prev_kv=True)   # 7: compacted
    w.create(*all_, start_revision=7, filters=[pb.WatchCreateRequest.NOPUT])  # 8: nothing
    w.create(*all_, start_revision=6, filters=[pb.WatchCreateRequest.NODELETE])  # 9
    w.create(k("b"), start_revision=6, prev_kv=True)   # 10: the delete, prev b@4
    first = w.events(1)
    assert evs(first) == [("PUT", k("a"), 5), ("DELETE", k("b"), 6), ("PUT", k("c"), 7),
                          ("PUT", k("a"), 7), ("PUT", k("d"), 8)]
    for i in range(5):                                 # 9..13: live for everyone
        s.put(k("e"), str(i))
    s.delete(k("a"), k("z"))                           # 14
    s.compact(13, physical=True)
    w.create(*all_, start_revision=12)                 # 11: compacted now
    w.create(*all_, start_revision=13)                 # 12: e@13 (a put at the point)
    w.create(*all_, start_revision=14, prev_kv=True)   # 13: deletes, prevs at 13
    s.put(k("f"), "1")
    s.compact(14, physical=True)                       # 14 is a delete revision
    w.create(*all_, start_revision=14)                 # 14: the deletes at 14 are gone (#18089)
    w.create(*all_, start_revision=14, watch_id=100)   # 100
    s.put(k("f"), "2")
    # etcd 3.4 (issue #18089, since fixed upstream) and kvstore alike: a delete at the
    # compaction revision is not replayed from it
    assert evs(w.events(14)) == [("PUT", k("f"), 15), ("PUT", k("f"), 16)]


def test_watch_canceled_by_compaction_then_cancel_and_reuse_id(s):
    """etcd keeps a watcher canceled for compaction in its stream's id table: a cancel of it
    is answered and its id stays taken."""
    k = s.key
    for i in range(4):
        s.put(k("a"), str(i))                          # 3..6
    s.compact(5)
    w = s.watch()
    w.create(k("a"), start_revision=3, watch_id=7)     # created, then canceled: compacted
    w.create(k("a"), start_revision=3)                 # auto id 0
    w.cancel(7)
    w.create(k("a"), watch_id=7)                       # the id again
    w.create(k("a"))                                   # auto id
    w.cancel(0)
    w.create(k("a"), watch_id=0)                       # 0 is "auto": the next free id
    s.put(k("a"), "x")


def test_watch_ids_duplicates_and_cancel(s):
    k = s.key
    w = s.watch()
    w.create(k("a"), watch_id=1)                       # client id 1
    w.create(k("a"))                                   # auto: 0
    w.create(k("a"))                                   # auto: 2 (1 is taken)
    w.create(k("b"), watch_id=1)                       # duplicate
    dup = w.responses(-1)[-1]
    assert (dup.created, dup.canceled, dup.cancel_reason) == (
        True, True, "mvcc: duplicate watch ID provided on the WatchStream")
    w.create(k("b"), watch_id=5)
    w.create(k("b"), watch_id=5, start_revision=2)     # duplicate, historical
    w.create(k("b"))                                   # auto: 3
    w.create(k("b"), k("a"))                           # key > range_end
    w.create(k("b"), k("b"))                           # key == range_end
    err = w.responses(-1)[-1]
    assert (err.created, err.canceled, err.cancel_reason) == (
        True, True, "mvcc: watcher range is empty")
    w.create(k("b"), k("a"), watch_id=9)               # the range check comes first
    w.create(b"\x00", b"\x00")                         # "\0" to "\0": every key
    w.create(k("c"), watch_id=-7)                      # a negative client id
    s.put(k("a"), "1")
    s.put(k("b"), "1")
    s.put(k("c"), "1")
    w.cancel(2)
    w.cancel(2)                                        # again: unknown now, no answer
    w.cancel(42)                                       # never known
    w.cancel(-1)
    w.cancel(-7)
    s.put(k("a"), "2")                                 # not to 2 any more
    w.create(k("a"), watch_id=2)                       # a canceled id can be reused
    w.create(k("a"))                                   # auto: next free
    s.put(k("a"), "3")
    s.put(k("c"), "3")


def test_watch_negative_start_revision(s):
    """etcd 3.4 creates the watch, then cancels it as compacted (compact_revision set, id
    kept). (etcd since PR #20693, 2025, refuses it at once: watch_id -1, created and canceled,
    cancel_reason "etcdserver: mvcc: required revision has been compacted".)"""
    k = s.key
    s.put(k("a"), "1")
    w = s.watch()
    w.create(k("a"), start_revision=-1)
    w.create(k("a"), start_revision=-100, watch_id=11)
    w.create(k("a"))
    s.put(k("a"), "2")
    w.cancel(0)
    w.cancel(11)


def test_watch_progress_requests(s):
    k = s.key
    w = s.watch()
    none = w.progress()                                # no watchers: still answered
    assert [(r.watch_id, r.header.revision, len(r.events)) for r in none] == [(-1, 2, 0)]
    w.create(k("a"))
    s.put(k("a"), "1")
    s.put(k("b"), "1")
    [p] = w.progress()
    assert (p.watch_id, p.header.revision, p.created, p.canceled) == (-1, 4, False, False)
    w.create(k("a"), start_revision=3, watch_id=10)    # catches up first
    w.progress()
    s.compact(4)
    w.create(k("a"), start_revision=2)                 # compacted
    w.progress()
    w2 = s.watch()                                     # another stream: its own answer
    w2.progress()
    w.progress()


def test_watch_two_streams_auto_ids_are_per_stream(s):
    k = s.key
    w1, w2 = s.watch(), s.watch()
    w1.create(k("a"))
    w2.create(k("a"), prev_kv=True)
    w2.create(k(""), prefix_end(k("")))
    w1.create(k("b"), watch_id=1)
    s.put(k("a"), "1")
    s.put(k("b"), "1")
    w1.cancel(0)
    s.put(k("a"), "2")
    w2.close()
    s.put(k("a"), "3")
    assert evs(w1.events(1)) == [("PUT", k("b"), 4)]


def test_watch_catch_up_many_revisions_then_live(s):
    k = s.key
    for i in range(60):
        s.txn(txn([], [put(k(f"k{i % 7}"), str(i).encode()), put(k(f"x{i}"), b"")]))
    s.delete(k("k"), prefix_end(k("k")))
    w = s.watch()
    w.create(k("k"), prefix_end(k("k")), start_revision=3, prev_kv=True)
    w.create(k(""), prefix_end(k("")), start_revision=30)
    w.create(k("k3"), start_revision=3)
    [catch_up] = [r for r in w.responses(0) if r.events]
    assert len(catch_up.events) == 67 and catch_up.header.revision == 63
    s.put(k("k1"), "live")
    s.txn(txn([], [put(k("k2"), b"live"), put(k("k1"), b"live2")]))


def test_watch_fragments_of_a_large_revision(s):
    """A revision whose events exceed etcd's fragment size (max request bytes + 512 KiB) is
    split over responses only for watches that asked for fragments."""
    k = s.key
    w = s.watch()
    w.create(k(""), prefix_end(k("")), prev_kv=True, fragment=True)   # 0
    w.create(k(""), prefix_end(k("")), prev_kv=True)                   # 1: one big response
    w.create(k(""), prefix_end(k("")), fragment=True)                  # 2: small enough
    big = [put(k(f"big{i:02}"), bytes([65 + i]) * BIG) for i in range(14)]
    s.txn(txn([], big))                                # 1.4 MB of values
    s.txn(txn([], [put(k(f"big{i:02}"), bytes([97 + i]) * BIG) for i in range(14)]))
    frags = w.responses(0)[2:]
    assert [r.fragment for r in frags] == [True, False]
    assert sum(len(r.events) for r in frags) == 14
    assert len(w.responses(1)) == 3
    s.delete(k("big"), prefix_end(k("big")), prev_kv=True)  # deletes with prev values: 1.4 MB
    assert [r.fragment for r in w.responses(0)[4:]] == [False]  # 14 bare deletes: small


def test_watch_catch_up_of_large_revisions(s):
    """A catch-up over revisions of large values. etcd sends every revision up to the current
    one in one response (fragmented if asked); kvstore deliberately stops a catch-up response
    at the revision where it passes 1 MiB of keys+values (watch_hub.BATCH_BYTES), so that
    clients with gRPC's default 4 MiB receive limit can follow. So here the watches are compared
    as the sequence of revisions they deliver (fragments joined, each revision with its header
    revision, in order), and kvstore's own responses are checked never to split a revision
    except into fragments, and to stay under etcd's fragment size when fragmenting."""
    k = s.key
    s.txn(txn([], [put(k(f"big{i:02}"), bytes([65 + i]) * BIG) for i in range(14)]))
    s.txn(txn([], [put(k(f"big{i:02}"), bytes([97 + i]) * BIG) for i in range(14)]))
    s.delete(k("big"), prefix_end(k("big")))
    s.put(k("small"), "1")
    w = s.watch()
    w.logical_ids.update({0, 1, 2})
    w.create(k(""), prefix_end(k("")), fragment=True, prev_kv=True, start_revision=3)  # 0
    w.create(k(""), prefix_end(k("")), prev_kv=True, start_revision=3)                 # 1
    w.create(k("big"), prefix_end(k("big")), fragment=True, start_revision=4)          # 2
    w.create(k("small"), start_revision=3)                                             # 3: exact
    s.put(k("small"), "2")
    assert [g.header.revision for g in w.logical("etcd")[0] if g.events] == [6, 6, 6, 6, 7]
    limit = 1536 * 1024 + 512 * 1024
    for wid in (0, 1, 2):
        seen = []
        run = []
        for r in w.by_watch_id("kvstore")[wid]:
            run.append(r)
            if r.fragment:
                assert r.ByteSize() < limit + BIG * 2 + 1024, (wid, r.ByteSize())
                continue
            revs = sorted({e.kv.mod_revision for part in run for e in part.events})
            assert not set(revs) & set(seen), f"watch {wid}: a revision split over responses"
            seen.extend(revs)
            run = []


def test_watch_slow_reader_catches_up_with_the_same_events(s):
    """A client that stops reading while hundreds of revisions are written: both servers stop
    pushing to it (etcd: victim, then unsynced watchers; kvstore: bounded queue, then unsynced
    watchers) and catch it up from history when it reads again. Batches depend on timing, so
    its watches are compared revision by revision (without header revisions); another
    stream that keeps reading is compared response by response."""
    k = s.key
    # the slow client's own connection: a 64 KiB receive window that never grows, so that
    # the servers soon cannot send more
    fast = s.watch()
    slow = s.watch([("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65535)])
    ns = (k(""), prefix_end(k("")))
    fast.create(*ns, prev_kv=True)
    slow.logical_ids.update({0, 1, 2})
    slow.logical_headers = False
    slow.create(*ns, prev_kv=True)                         # 0
    slow.create(k("k1"), filters=[pb.WatchCreateRequest.NODELETE])  # 1
    slow.create(*ns)                                       # 2
    for st in slow.streams.values():
        st.pause()
    s.auto_check = False
    value = b"v" * 20_000
    for i in range(300):
        if i % 50 == 49:
            s.delete(k("k"), prefix_end(k("k")), prev_kv=False)
        else:
            s.txn(txn([], [put(k(f"k{i % 5}"), value + b"%d" % i), put(k(f"x{i % 3}"), b"%d" % i)]))
    s.auto_check = True
    for st in slow.streams.values():
        st.resume()
    s.check_watches(min_wait=0.5)
    got = [g for g in slow.logical("etcd")[0] if g.events]
    assert len(got) == 300 and sum(len(g.events) for g in got) == 294 * 2 + 6 * 5
    assert len(fast.responses(0)) == 301
    for server in ("etcd", "kvstore"):
        n = len(slow.by_watch_id(server)[0])
        assert n < 301, f"{server} was never held back: the test does not test a slow reader"


@pytest.mark.parametrize("seed", range(2))
def test_watch_generated_sequences(s, seed):
    """Seeded random KV sequences (the KV harness's generator) under random watches, some
    created at random (historical, compacted, future...) revisions along the way."""
    gen = SequenceGenerator(1000 + seed, s.namespace, s.start_rev, s.start_compact_rev)
    rnd = gen.rnd
    w = s.watch()
    for _ in range(6):
        key, end = gen.key_range()
        kw = {}
        if rnd.random() < 0.5:
            kw["prev_kv"] = True
        if rnd.random() < 0.3:
            kw["filters"] = [rnd.choice([pb.WatchCreateRequest.NOPUT,
                                         pb.WatchCreateRequest.NODELETE])]
        w.create(key, end, **kw)
    for i in range(40):
        o = gen.next_op()
        if o.method == "Compact":  # see test_watch_start_revisions_and_compaction
            o.request.physical = True
        out = s.step(o)
        gen.observe(o, out.response, not out.ok)
        if i % 10 == 5:
            key, end = gen.key_range()
            # (negative start revisions: test_watch_negative_start_revision)
            w.create(key, end, start_revision=max(gen.revision(), 0),
                     prev_kv=rnd.random() < 0.5)


# -- lease scenarios ------------------------------------------------------------------------------

def test_lease_grant(s):
    assert s.grant(60, 1001).response.ID == 1001       # client-chosen id
    assert code(s.grant(60, 1001)) == FAILED_PRECONDITION   # lease already exists
    assert s.grant(60).response.ID == ALIAS_BASE + 1   # server-chosen (translated)
    assert s.grant(1, 1002).response.TTL == MIN_TTL    # below the minimum
    assert s.grant(0, 1003).response.TTL == MIN_TTL
    assert s.grant(-5, 1004).response.TTL == MIN_TTL
    assert s.grant(MIN_TTL + 1, 1005).response.TTL == MIN_TTL + 1
    assert s.grant(MAX_TTL, 1006).response.TTL == MAX_TTL
    assert code(s.grant(MAX_TTL + 1, 1007)) == OUT_OF_RANGE   # too large lease TTL
    assert code(s.grant(MAX_TTL + 1, 1001)) == OUT_OF_RANGE   # checked before "exists"
    s.grant(2**63 - 1, 1008)
    s.grant(30, -5)                                    # a negative id is a client id too
    s.grant(30, 2**63 - 1)
    s.ttl(-5)
    s.ttl(0)                                           # no lease: TTL -1
    assert code(s.revoke(0)) == NOT_FOUND
    s.leases()
    for lid in (1002, 1003, 1004, 1005, 1006, -5, 2**63 - 1, ALIAS_BASE + 1):
        s.revoke(lid)
    s.leases()


def test_lease_server_chosen_ids_are_positive_and_distinct(shared):
    ids = {}
    for ep in (shared.etcd, shared.kvstore):
        got = []
        for _ in range(20):
            out = ep.call("LeaseGrant", pb.LeaseGrantRequest(TTL=60))
            assert out.ok, out.text()
            got.append(out.response.ID)
        ids[ep.name] = got
        for lid in got:
            assert ep.call("LeaseRevoke", pb.LeaseRevokeRequest(ID=lid)).ok
    for server, got in ids.items():
        assert all(0 < i < 2**63 for i in got) and len(set(got)) == len(got), (server, got)


def test_lease_put_attach_detach_revoke(s):
    k = s.key
    w = s.watch()
    w.create(k(""), prefix_end(k("")), prev_kv=True)
    s.grant(100, 77)
    s.grant(100)                                       # ALIAS_BASE + 1
    other = ALIAS_BASE + 1
    assert code(s.put(k("x"), "v", lease=78)) == NOT_FOUND
    s.put(k("c"), "1", lease=77)
    s.put(k("a"), "1", lease=77)
    s.put(k("b"), "1", lease=77)
    s.put(k("b"), "2", lease=other)                    # moves to the other lease
    s.put(k("d"), "1", lease=77)
    s.put(k("d"), "2")                                 # no lease any more
    s.put(k("e"), "1", lease=77)
    s.delete(k("e"))                                   # gone: no longer the lease's
    s.put(k("f"), "1", lease=77)
    s.put(k("f"), "2", ignore_lease=True)              # keeps lease 77
    s.put(k("g"), "1", lease=other)
    s.put(k("g"), ignore_value=True, lease=77)
    s.txn(txn([], [put(k("h"), b"1", lease=77), put(k("i"), b"1", lease=other)]))
    assert code(s.txn(txn([], [put(k("j"), b"1", lease=79)]))) == NOT_FOUND
    s.txn(txn([cmp(k("a"), "LEASE", "EQUAL", 77)], [rng(k("a"))], [rng(k("b"))]))
    s.txn(txn([cmp(k("b"), "LEASE", "EQUAL", other)], [rng(k("a"))], [rng(k("b"))]))
    s.range(k(""), prefix_end(k("")))
    assert sorted(s.ttl(77, keys=True).response.keys) == [k(x) for x in "acfgh"]
    s.ttl(other, keys=True)
    s.ttl(77, keys=False)
    s.ttl(12345, keys=True)                            # unknown: TTL -1
    s.leases()
    assert code(s.revoke(12345)) == NOT_FOUND
    revoked = s.revoke(77)                             # a, c, f, g, h: one revision
    s.range(k(""), prefix_end(k("")))
    [deletes] = [r for r in w.responses(0) if r.events and r.events[0].type == kv_pb2.Event.DELETE
                 and len(r.events) > 1]
    assert evs(deletes.events) == [("DELETE", k(x), revoked.response.header.revision)
                                   for x in "acfgh"]
    assert code(s.revoke(77)) == NOT_FOUND
    s.ttl(77, keys=True)
    assert code(s.put(k("a"), "again", lease=77)) == NOT_FOUND
    s.grant(100, 77)                                   # the id is free again
    s.put(k("a"), "again", lease=77)
    s.revoke(other)                                    # b, i
    s.grant(30, 90)
    s.revoke(90)                                       # no keys: no new revision
    s.leases()
    replay(s, w)


def test_lease_leases_ordered_by_remaining_ttl(shared):
    """LeaseLeases lists leases by remaining TTL (etcd's leasesByExpiry), on both."""
    for ep in (shared.etcd, shared.kvstore):
        ids = []
        for i, ttl in enumerate((300, 100, 500, 200)):
            out = ep.call("LeaseGrant", pb.LeaseGrantRequest(TTL=ttl, ID=500 + i))
            assert out.ok, out.text()
            ids.append(out.response.ID)
        out = ep.call("LeaseLeases", pb.LeaseLeasesRequest())
        assert [status.ID for status in out.response.leases] == [501, 503, 500, 502], (ep.name, out.text())
        for lid in ids:
            ep.call("LeaseRevoke", pb.LeaseRevokeRequest(ID=lid))


def test_lease_keepalive_and_time_to_live(s):
    k = s.key
    s.grant(60, 300)
    s.grant(MIN_TTL, 301)
    s.put(k("a"), "1", lease=300)
    ka = s.keepalive_stream()
    assert ka.keepalive(300).TTL == 60
    assert ka.keepalive(999).TTL == 0                  # unknown
    assert ka.keepalive(0).TTL == 0
    assert ka.keepalive(301).TTL == MIN_TTL
    time.sleep(1.2)
    s.ttl(300, keys=True)                              # ~58
    s.ttl(301)                                         # ~0
    assert ka.keepalive(301).TTL == MIN_TTL            # renewed: a full TTL again
    s.ttl(301)                                         # ~1
    ka2 = s.keepalive_stream()                         # a second stream
    assert ka2.keepalive(300).TTL == 60
    s.revoke(300)
    assert ka.keepalive(300).TTL == 0                  # revoked
    s.ttl(300)
    s.revoke(301)


def test_lease_expiry_deletes_keys_with_watch_events(s):
    """Leases of the minimum TTL expire: their keys go in one revision each, with DELETE
    events; a lease kept alive, a longer one and keys moved off the lease stay."""
    k = s.key
    w = s.watch()
    w.create(k(""), prefix_end(k("")), prev_kv=True)   # 0
    w.create(k("b"))                                   # 1
    w.create(k(""), prefix_end(k("")), filters=[pb.WatchCreateRequest.NOPUT])  # 2
    s.grant(MIN_TTL, 401)                              # expires with c, b, a
    s.grant(MIN_TTL, 402)                              # no keys: expires without a revision
    s.grant(MIN_TTL, 403)                              # kept alive
    s.grant(60, 404)
    for key in ("c", "b", "a"):
        s.put(k(key), key, lease=401)
    s.put(k("moved"), "1", lease=401)
    s.put(k("moved"), "2", lease=404)
    s.put(k("freed"), "1", lease=401)
    s.put(k("freed"), "2")
    s.put(k("kept"), "1", lease=403)
    s.put(k("long"), "1", lease=404)
    ka = s.keepalive_stream()
    start = time.monotonic()
    while not s.expired(401, 402):                     # 403 kept alive meanwhile
        assert time.monotonic() - start < 10, "leases 401, 402 not expired after 10 s"
        ka.keepalive(403, header=False)
        time.sleep(0.3)
    s.wait_expired(401, 402)
    deletes = [r for r in w.responses(0) if r.events and r.events[0].type == kv_pb2.Event.DELETE]
    assert [evs(r.events) for r in deletes] == [[("DELETE", k("a"), 12), ("DELETE", k("b"), 12),
                                                 ("DELETE", k("c"), 12)]]
    s.range(k(""), prefix_end(k("")))
    s.ttl(401, keys=True)
    assert ka.keepalive(401).TTL == 0
    s.ttl(403, keys=True)
    s.leases()
    assert code(s.revoke(402)) == NOT_FOUND
    s.put(k("after"), "1")                             # the next revision is the same on both
    w.create(k(""), prefix_end(k("")), start_revision=11, prev_kv=True)  # history of it
    s.revoke(404)                                      # moved, long: revoked by the client


# -- timers: periodic progress notifications --------------------------------------------------------

@pytest.fixture(scope="module")
def ticking(tmp_path_factory):
    """A pair whose servers send watch progress notifications every 500 ms."""
    _require_etcd()
    base = tmp_path_factory.mktemp("diff-watch-progress")
    etcd = EtcdProcess(base / "etcd",
                       extra_args=["--experimental-watch-progress-notify-interval=500ms"])
    kv = KvstoreProcess(base / "kvstore", extra_args=["--watch-progress-notify-interval", "500ms"])
    start_both(etcd, kv)
    pair = DiffPair(etcd.endpoint, kv.endpoint, report_dir=base)
    try:
        yield pair
    finally:
        pair.close()
        etcd.stop()
        kv.stop()


def test_watch_progress_notify(ticking):
    """progress_notify watches get an empty response with the current revision at each tick,
    unless they were sent events since the previous one. Ticks fire at each server's own
    moments, so runs of identical notifications are compared as one, after waiting two ticks."""
    s = ticking.sequence("progress notify", barrier=True, cls=WatchLeaseSequence)
    try:
        s.auto_check = False
        k = s.key
        w = s.watch()
        w.collapse_progress = True
        w.create(k("a"), progress_notify=True)                      # 0
        w.create(k("b"), progress_notify=True, prev_kv=True)        # 1
        w.create(k("c"))                                            # 2: never notified
        w.create(k("a"), progress_notify=True, start_revision=1)   # 3: compacted
        w.create(k("d"), progress_notify=True, start_revision=20)  # 4: a future start
        w.create(k("a"), k("a"), progress_notify=True)             # invalid range
        time.sleep(1.2)                                             # two ticks at least
        s.check_watches(settle=False)
        assert [(r.header.revision, r.created) for r in w.compared(0)] == [(2, True), (2, False)]
        # one revision for both writes: a tick between two separate puts would be timing
        s.txn(txn(success=[put(k("a"), b"1"), put(k("c"), b"1")]))
        time.sleep(1.2)
        s.check_watches(settle=False)
        w.cancel(1)
        w.progress()                                                # on request, as well
        time.sleep(0.7)
        s.check_watches(settle=False)
        assert [(r.header.revision, r.created, r.canceled) for r in w.compared(1)] == [
            (2, True, False), (2, False, False), (3, False, False), (3, False, True)]
        assert [r.header.revision for r in w.compared(0)] == [2, 2, 3, 3]
        assert [r.header.revision for r in w.compared(4)] == [2, 2, 3]
        assert [r.compact_revision for r in w.compared(3)] == [0, 2]
    finally:
        s.close()
        _revoke_all(ticking)


def test_watch_half_closed_stream_keeps_sending(s):
    """A client that closes its side of the stream still gets the events of its watches."""
    k = s.key
    w = s.watch()
    w.create(k("a"), prev_kv=True)
    w.create(k(""), prefix_end(k("")))
    s.put(k("a"), "1")
    w.half_close()
    s.put(k("a"), "2")
    s.delete(k("a"))
    assert evs(w.events(0)) == [("PUT", k("a"), 3), ("PUT", k("a"), 4), ("DELETE", k("a"), 5)]


# -- restarts -------------------------------------------------------------------------------------

def test_leases_and_watch_history_survive_a_restart(tmp_path):
    """Both servers restarted: leases (ids, TTLs, keys) are back, a watch can replay history
    from before the restart, expiry still deletes a lease's keys. kvstore snapshots every 3
    log entries here, so the state comes back from a snapshot plus the entries after it."""
    _require_etcd()
    etcd = EtcdProcess(tmp_path / "etcd")
    kv = KvstoreProcess(tmp_path / "kvstore", extra_args=["--snapshot-count", "3"])
    start_both(etcd, kv)
    pair = DiffPair(etcd.endpoint, kv.endpoint, report_dir=tmp_path)
    s = pair.sequence("restart", barrier=True, cls=WatchLeaseSequence)
    try:
        k = s.key
        s.grant(60, 100)
        s.grant(60)                                        # ALIAS_BASE + 1
        s.grant(MIN_TTL, 101)                              # expires after the restart
        s.grant(60, 102)
        s.put(k("a"), "1", lease=100)
        s.put(k("b"), "1", lease=ALIAS_BASE + 1)
        s.txn(txn([], [put(k("c"), b"1", lease=101), put(k("d"), b"1", lease=101),
                       put(k("e"), b"1", lease=102)]))
        s.put(k("a"), "2", lease=101)                      # moved from 100 to 101
        s.revoke(102)                                      # e goes
        s.delete(k("d"))
        s.put(k("f"), "1")
        for server in (etcd, kv):
            server.stop()
        # one after the other, kvstore last: its leases' clocks start when it starts, etcd's
        # when it becomes leader; the TTLs read next then differ by less than a second
        etcd.start()
        kv.start()
        s.leases()
        for lid in (100, ALIAS_BASE + 1, 101):
            s.ttl(lid, keys=True)
        assert code(s.ttl(102)) is OK and s.ttl(102).response.TTL == -1
        s.range(k(""), prefix_end(k("")))
        w = s.watch()
        w.create(k(""), prefix_end(k("")), start_revision=3, prev_kv=True)  # all of it
        ka = s.keepalive_stream()
        assert ka.keepalive(100).TTL == 60
        s.put(k("g"), "1", lease=ALIAS_BASE + 1)
        s.wait_expired(101)                                # a, c: one revision, after f, g
        deletes = [r for r in w.responses(0) if r.events and r.events[0].type == kv_pb2.Event.DELETE]
        assert [evs(r.events) for r in deletes][-1] == [("DELETE", k("a"), 11),
                                                        ("DELETE", k("c"), 11)]
        s.ttl(100, keys=True)
        s.range(k(""), prefix_end(k("")))
    finally:
        s.close()
        pair.close()
        etcd.stop()
        kv.stop()
