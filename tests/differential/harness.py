"""Differential testing: the same KV requests to a real etcd and to kvstore, answers compared.

A ``DiffPair`` holds a gRPC channel to each server. ``DiffPair.sequence()`` starts a
``Sequence``: a fresh key namespace and a revision origin. Each ``Sequence.step(op)`` sends the
request to etcd, then to kvstore, and compares the two outcomes field by field:

* successes and errors alike: an error must have the same gRPC status code and exactly the same
  details string;
* header.cluster_id, header.member_id and header.raft_term are ignored at every nesting level
  (server identity); everything else is compared, including whether a submessage is present;
* revisions are compared relative to the start of the sequence (see below);
* a Range sorted by a target other than KEY is compared as the sequence of sort-target values
  plus the multiset of kvs, because etcd sorts with Go's unstable sort: kvs are re-ordered by
  key inside each run of equal sort values, and when the response was truncated by ``limit``
  (more=true) only the sort value of the last run is compared, as etcd may keep any of its
  members.

Revisions. Servers shared by many sequences have different histories; a sequence works in
*logical* revisions. With ``barrier=True`` (the default on shared servers) the sequence starts
with ``Put("_sync")`` and a ``Compact`` at the revision that put made, on both servers: exactly
what a fresh etcd at revision 1 would reach as revision 2, compacted at 2. Logical revision 2
is then that point on each server. Requests carry logical revisions (positive revision fields
are shifted onto each server's own revisions; 0 and negative values keep their meaning) and
positive revisions in responses (header.revision, kvs create/mod revision) are shifted back.
So every request printed in a failure report is exactly what to send to a fresh etcd after
``Put _sync`` + ``Compact 2`` to see etcd's side of it. On a server nothing has touched yet a
sequence may skip the barrier: logical revisions are then the real ones.
Keys of a sequence live under its own namespace (``n00003/``), later namespaces sort after
earlier ones and the barrier key before all, so even ``"\\0"``-ended ranges see only the
sequence's own keys.
"""
from __future__ import annotations

import difflib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import text_format

from kvstore.api import kv_pb2, rpc_pb2 as pb, rpc_pb2_grpc

from .generate import Op

LOGICAL_BASE_AFTER_BARRIER = 2
BARRIER_KEY = b"_sync"
CALL_TIMEOUT = 15.0
LEASE_UNARY_METHODS = ("LeaseGrant", "LeaseRevoke", "LeaseTimeToLive", "LeaseLeases")

_IDENTITY_FIELDS = ("cluster_id", "member_id", "raft_term")
_RANGE_REVISION_FIELDS = ("revision", "min_mod_revision", "max_mod_revision",
                          "min_create_revision", "max_create_revision")
_SORT_VALUE = {
    pb.RangeRequest.VERSION: lambda kv: kv.version,
    pb.RangeRequest.CREATE: lambda kv: kv.create_revision,
    pb.RangeRequest.MOD: lambda kv: kv.mod_revision,
    pb.RangeRequest.VALUE: lambda kv: kv.value,
}
_SORT_FIELD = {pb.RangeRequest.VERSION: "version", pb.RangeRequest.CREATE: "create_revision",
               pb.RangeRequest.MOD: "mod_revision", pb.RangeRequest.VALUE: "value"}


# -- one server ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a server answered: a response, or a gRPC status code and details."""

    response: object | None = None
    code: grpc.StatusCode | None = None
    details: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None

    def text(self) -> str:
        if self.ok:
            body = text_format.MessageToString(self.response)
            name = type(self.response).__name__
            return f"OK {name} {{\n{_indent(body)}}}" if body else f"OK {name} {{}}"
        return f"ERROR {self.code.name}: {self.details!r}"


class Endpoint:
    def __init__(self, name: str, address: str):
        self.name = name
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)

    def call(self, method: str, request) -> Outcome:
        """A unary call of the KV service, or of the Lease service for its unary methods."""
        stub = self.lease if method in LEASE_UNARY_METHODS else self.kv
        try:
            return Outcome(getattr(stub, method)(request, timeout=CALL_TIMEOUT))
        except grpc.RpcError as e:
            if (e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                    and not (e.details() or "").startswith("etcdserver: ")):
                # not an answer worth comparing: the server is gone or stuck
                raise AssertionError(f"{self.name} at {self.address} did not answer {method}: "
                                     f"{e.code().name} {e.details()}") from None
            return Outcome(code=e.code(), details=e.details())

    def close(self) -> None:
        self.channel.close()


# -- revisions: logical <-> real ------------------------------------------------------------------

def shift_request(method: str, request, delta: int):
    """A copy of ``request`` with its positive revision fields moved by ``delta``."""
    r = type(request)()
    r.CopyFrom(request)
    if delta:
        _shift_request(method, r, delta)
    return r


def _shift_request(method: str, r, delta: int) -> None:
    if method == "Range":
        for f in _RANGE_REVISION_FIELDS:
            v = getattr(r, f)
            if v > 0:
                setattr(r, f, v + delta)
    elif method == "Compact":
        if r.revision > 0:
            r.revision += delta
    elif method == "Txn":
        for c in r.compare:
            which = c.WhichOneof("target_union")
            if which in ("create_revision", "mod_revision") and getattr(c, which) > 0:
                setattr(c, which, getattr(c, which) + delta)
        for o in list(r.success) + list(r.failure):
            which = o.WhichOneof("request")
            if which == "request_range":
                _shift_request("Range", o.request_range, delta)
            elif which == "request_txn":
                _shift_request("Txn", o.request_txn, delta)


def normalize(response, delta: int):
    """A copy without server identity, with positive revisions moved by ``-delta``."""
    r = type(response)()
    r.CopyFrom(response)
    _normalize(r, delta)
    return r


def _normalize(msg, delta: int) -> None:
    if isinstance(msg, pb.ResponseHeader):
        for f in _IDENTITY_FIELDS:
            msg.ClearField(f)
        if msg.revision > 0:
            msg.revision -= delta
        return
    if isinstance(msg, kv_pb2.KeyValue):
        if msg.create_revision > 0:
            msg.create_revision -= delta
        if msg.mod_revision > 0:
            msg.mod_revision -= delta
        return
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.is_repeated:
            for item in value:
                _normalize(item, delta)
        else:
            _normalize(value, delta)


# -- sorted ranges ------------------------------------------------------------------------------

def canonical(method: str, request, response) -> None:
    """Makes the order among sort ties canonical (in place), at any txn nesting level."""
    if method == "Range":
        _canonical_range(request, response)
    elif method == "Txn":
        branch = request.success if response.succeeded else request.failure
        for o, ro in zip(branch, response.responses):
            which = o.WhichOneof("request")
            if which == "request_range" and ro.WhichOneof("response") == "response_range":
                _canonical_range(o.request_range, ro.response_range)
            elif which == "request_txn" and ro.WhichOneof("response") == "response_txn":
                canonical("Txn", o.request_txn, ro.response_txn)


def _canonical_range(req: pb.RangeRequest, resp: pb.RangeResponse) -> None:
    value_of = _SORT_VALUE.get(req.sort_target)
    if value_of is None or req.sort_order not in (pb.RangeRequest.NONE, pb.RangeRequest.ASCEND,
                                                  pb.RangeRequest.DESCEND):
        return  # by key (unique, so exact) or not a valid sort: compare as is
    kvs = list(resp.kvs)
    runs: list[list] = []
    for kv in kvs:
        if runs and value_of(runs[-1][0]) == value_of(kv):
            runs[-1].append(kv)
        else:
            runs.append([kv])
    out = []
    for i, run in enumerate(runs):
        run = sorted(run, key=lambda kv: kv.key)
        if resp.more and i == len(runs) - 1:
            # truncated inside this run of ties: which members etcd keeps is unspecified
            field = _SORT_FIELD[req.sort_target]
            run = [kv_pb2.KeyValue(**{field: getattr(kv, field)}) for kv in run]
        out.extend(run)
    del resp.kvs[:]
    resp.kvs.extend(out)


# -- comparing ----------------------------------------------------------------------------------

def comparable(method: str, request, outcome: Outcome, delta: int) -> Outcome:
    """The outcome as compared: normalized revisions and identity, canonical sort ties."""
    if not outcome.ok:
        return outcome
    resp = normalize(outcome.response, delta)
    canonical(method, request, resp)
    return Outcome(resp)


def _indent(s: str, by: str = "  ") -> str:
    return "".join(by + line + "\n" for line in s.splitlines())


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_REPEATED_OP = re.compile(r"((?:success|failure) \{ request_\w+ \{ [^{}]* \} \})(?: \1){3,}")


def abbreviate(text: str) -> str:
    """For reading: shortens long quoted strings (large values) and runs of identical simple
    txn ops in a text-format dump (transcript files keep everything)."""
    def short(m):
        s = m.group(1)
        return m.group(0) if len(s) <= 96 else f'"{s[:32]}"...({len(s)} chars)'

    def runs(m):
        return f"{m.group(1)} ...(x{m.group(0).count(m.group(1))})"

    return _REPEATED_OP.sub(runs, _QUOTED.sub(short, text))


class Mismatch(AssertionError):
    pass


# -- pairs and sequences --------------------------------------------------------------------------

class DiffPair:
    """A real etcd and a kvstore, addressed by their gRPC endpoints."""

    def __init__(self, etcd_address: str, kvstore_address: str, report_dir: Path | None = None):
        self.etcd = Endpoint("etcd", etcd_address)
        self.kvstore = Endpoint("kvstore", kvstore_address)
        self.report_dir = Path(report_dir) if report_dir else None
        self._sequences = 0

    @property
    def fresh(self) -> bool:
        return self._sequences == 0

    def sequence(self, title: str, barrier: bool | None = None, cls: type | None = None
                 ) -> Sequence:
        """A new sequence in its own namespace; ``barrier`` defaults to "unless fresh";
        ``cls``: a subclass of Sequence to make it with."""
        if barrier is None:
            barrier = not self.fresh
        if not barrier and not self.fresh:
            raise ValueError("only the first sequence on fresh servers may skip the barrier")
        ns = b"n%05d/" % self._sequences
        self._sequences += 1
        return (cls or Sequence)(self, title, ns, barrier)

    def close(self) -> None:
        self.etcd.close()
        self.kvstore.close()


class Sequence:
    def __init__(self, pair: DiffPair, title: str, namespace: bytes, barrier: bool):
        self.pair = pair
        self.title = title
        self.namespace = namespace
        self.barrier = barrier
        self.ops: list[Op] = []
        self.deltas: dict[str, int] = {}
        # the logical state at the start: current revision, compacted revision (-1: never)
        self.start_rev = self.start_compact_rev = LOGICAL_BASE_AFTER_BARRIER
        if barrier:
            self.logical_base = LOGICAL_BASE_AFTER_BARRIER
            for ep in (pair.etcd, pair.kvstore):
                put = ep.call("Put", pb.PutRequest(key=BARRIER_KEY, value=namespace))
                assert put.ok, f"{ep.name}: barrier put failed: {put.text()}"
                rev = put.response.header.revision
                c = ep.call("Compact", pb.CompactionRequest(revision=rev, physical=True))
                assert c.ok, f"{ep.name}: barrier compaction at {rev} failed: {c.text()}"
                self.deltas[ep.name] = rev - self.logical_base
        else:
            self.logical_base = self.start_rev = 1
            self.start_compact_rev = -1
            for ep in (pair.etcd, pair.kvstore):
                r = ep.call("Range", pb.RangeRequest(key=BARRIER_KEY))
                assert r.ok, f"{ep.name}: {r.text()}"
                self.deltas[ep.name] = r.response.header.revision - self.logical_base

    def key(self, suffix: bytes | str = b"") -> bytes:
        if isinstance(suffix, str):
            suffix = suffix.encode()
        return self.namespace + suffix

    # -- running -------------------------------------------------------------------------------

    def step(self, op: Op) -> Outcome:
        """Sends ``op`` to both servers; returns etcd's (comparable) outcome, raises Mismatch."""
        index = len(self.ops)
        self.ops.append(op)
        outcomes = {}
        for ep in (self.pair.etcd, self.pair.kvstore):
            delta = self.deltas[ep.name]
            try:
                raw = ep.call(op.method, self.request_for(ep.name, op))
            except AssertionError as e:  # no answer at all (crashed or stuck)
                prefix = _indent(abbreviate(self.transcript(index)))
                raise AssertionError(f"{e}\nrequest #{index}:\n  {abbreviate(op.text())}\n"
                                     f"sequence prefix:\n{prefix}") from None
            raw = self.received(ep.name, op, raw)
            outcomes[ep.name] = comparable(op.method, op.request, raw, delta)
        want, got = outcomes["etcd"], self.reconcile(op, outcomes["etcd"], outcomes["kvstore"])
        if want.text() != got.text():
            raise Mismatch(self._report(index, op, want, got))
        return want

    # hooks for subclasses (e.g. lease ids the servers choose, remaining TTLs that tick)
    def request_for(self, server: str, op: Op):
        """The request as sent to ``server`` (by its name): revisions made real."""
        return shift_request(op.method, op.request, self.deltas[server])

    def received(self, server: str, op: Op, outcome: Outcome) -> Outcome:
        """What ``server`` answered, before normalization."""
        return outcome

    def reconcile(self, op: Op, want: Outcome, got: Outcome) -> Outcome:
        """kvstore's comparable outcome, given etcd's: may forgive what may differ by timing."""
        return got

    def run(self, ops) -> list[Outcome]:
        return [self.step(o if isinstance(o, Op) else Op.of(o)) for o in ops]

    # shorthands for hand-written scenarios: each sends one request and compares
    def put(self, key, value=b"", **kw) -> Outcome:
        return self.step(Op.of(pb.PutRequest(key=_b(key), value=_b(value), **kw)))

    def range(self, key, range_end=b"", **kw) -> Outcome:
        return self.step(Op.of(pb.RangeRequest(key=_b(key), range_end=_b(range_end), **kw)))

    def delete(self, key, range_end=b"", **kw) -> Outcome:
        return self.step(Op.of(pb.DeleteRangeRequest(key=_b(key), range_end=_b(range_end), **kw)))

    def txn(self, request: pb.TxnRequest) -> Outcome:
        return self.step(Op.of(request))

    def compact(self, revision: int, physical: bool = False) -> Outcome:
        return self.step(Op.of(pb.CompactionRequest(revision=revision, physical=physical)))

    # -- reporting -----------------------------------------------------------------------------

    def preamble(self) -> str:
        if self.barrier:
            return (f"# on a fresh etcd: Put {{key: {BARRIER_KEY!r}}} (-> revision 2), then "
                    f"Compact {{revision: 2}}; revisions below are relative to that")
        return "# on a fresh etcd (revision 1); revisions below are real"

    def transcript(self, upto: int | None = None) -> str:
        lines = [f"# sequence {self.title!r}, namespace {self.namespace!r}", self.preamble()]
        for i, o in enumerate(self.ops[:upto]):
            if o.note:
                lines.append(f"# {o.note}")
            lines.append(f"[{i}] {o.text()}")
        return "\n".join(lines) + "\n"

    def _report(self, index: int, op: Op, want: Outcome, got: Outcome) -> str:
        diff = "\n".join(difflib.unified_diff(
            abbreviate(want.text()).splitlines(), abbreviate(got.text()).splitlines(),
            "etcd", "kvstore", lineterm="", n=2))
        saved = ""
        if self.pair.report_dir is not None:
            self.pair.report_dir.mkdir(parents=True, exist_ok=True)
            path = self.pair.report_dir / f"mismatch-{self.namespace.decode().strip('/')}.txt"
            path.write_text(self.transcript(index + 1))
            saved = f"\nfull transcript (replayable with harness.load_transcript): {path}"
        prefix = self.transcript(index)
        return (f"kvstore differs from etcd at request #{index} of sequence {self.title!r}"
                f" (namespace {self.namespace!r}, kvstore-vs-etcd revision offset "
                f"{self.deltas['kvstore'] - self.deltas['etcd']:+d})\n"
                f"request:\n  {abbreviate(op.text())}\n"
                f"etcd:\n{_indent(abbreviate(want.text()))}"
                f"kvstore:\n{_indent(abbreviate(got.text()))}"
                f"diff:\n{_indent(diff)}"
                f"sequence prefix ({index} requests before it):\n{_indent(abbreviate(prefix))}"
                f"{saved}")


def _b(v) -> bytes:
    return v.encode() if isinstance(v, str) else v


def load_transcript(text: str) -> list[Op]:
    """The ops of a transcript written on mismatch (comments skipped)."""
    from .generate import parse_op
    ops = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        ops.append(parse_op(re.sub(r"^\[\d+\]\s*", "", line)))
    return ops


# -- running two servers --------------------------------------------------------------------------

def start_both(etcd, kvstore) -> None:
    """Starts the two server processes concurrently (etcd takes most of a second)."""
    errors: list[BaseException] = []

    def start(p):
        try:
            p.start()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(p,)) for p in (etcd, kvstore)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        etcd.stop()
        kvstore.stop()
        raise errors[0]
