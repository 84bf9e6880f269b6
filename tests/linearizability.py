"""A linearizability checker for histories of etcd KV operations (put, get, cas, delete).

Test clients talking to different members of a replicated kvstore cluster record each
operation with its call and return time (``time.monotonic()``), the client, and the outcome;
``check(history)`` then decides whether some total order of the operations, consistent with
real time, explains every response. The search is porcupine's (anishathalye/porcupine, after
Wing & Gong and Lowe): a linked list of call/return entries in time order, backtracking with an
explicit stack, and memoized (linearized-set bitset, model state) pairs, plus a few sound
prunings that keep unknown outcomes and failing histories cheap (see ``_search``). Keys are
independent registers, so the history is partitioned per key and each key is searched on its
own.

Recording::

    h = History()
    t = h.call(client, "put", b"k", value=b"v")          # before sending the request
    h.ok(t, revision=resp.header.revision)               # acknowledged
    h.unknown(t)                                         # timeout / connection error
    t = h.call(client, "get", b"k")
    h.ok(t, value=b"v" or None, mod_revision=5 or 0, revision=resp.header.revision)
    t = h.call(client, "cas", b"k", expected=5, value=b"w")   # If mod(k)==5 Then Put Else Range
    h.ok(t, succeeded=True, revision=6)
    h.ok(t, succeeded=False, value=b"v", mod_revision=7, revision=9)   # the Else branch's read
    t = h.call(client, "delete", b"k")
    h.ok(t, deleted=1, revision=8)
    result = check(h)
    assert result.ok, result.report()

``History.add_put/add_get/add_cas/add_delete`` add completed operations with explicit times (for
hand-written histories); ``ret=None`` there means an unknown outcome.

The model, per key
------------------
The state is ``(value, lo, hi)``. ``value`` is ``None`` when the key is absent. When present,
its mod_revision is known to lie in ``[lo, hi]``; when absent, ``[lo, hi]`` bounds the revision
at which it was last deleted (0 if it never existed), which later puts must exceed, while a
read or a compare sees mod_revision 0. Known responses pin the revision exactly (lo == hi).

* put acknowledged with revision R: legal iff R > lo (revisions of one key strictly increase),
  then ``(value, R, R)``.
* get returning (v, m): legal iff the key is absent and v is None, or it holds v and
  lo <= m <= hi; the read then pins the revision: ``(v, m, m)``.
* cas succeeded with revision R: legal iff the compare held (expected 0: key absent; else the key
  is present and lo <= expected <= hi) and R > expected; then ``(value, R, R)``. A failed cas is
  a read (its Else branch) plus the static check that the mod_revision it read != expected.
* delete deleted=1 with revision R: legal iff present and R > lo; then absent ``(None, R, R)``.
  deleted=0: legal iff absent.

Unknown outcomes (timeouts, connection errors, ``failed`` writes unless ``definite=True``, and
writes still pending when ``check`` runs) get return time +infinity, as in porcupine: the op
may be linearized anywhere after its call. "It never took effect" is the same as "it took
effect after everything else", because nothing observes the state after the last op, so the
model only needs the "took effect" branch, and every unknown op is legal in every state:

* put: ``(value, max(lo, f) + 1, inf)``: the new revision is unknown but above the key's
  previous one, and above f, the highest header revision of an op that returned before the put
  was called (etcd assigns it when it applies the put, after that op saw revision f; with
  ``cross_key`` the ops on all keys count, else those on the key).
  We keep a lower bound, not the set of possibilities: every later constraint on that revision
  is a bound (a put/delete/cas after it needs its revision above it, a read pins it), and the
  set of revisions it can have is always an interval. What is not tracked: that it differs
  from every other revision in the history (uniqueness is only checked between acknowledged
  writes), so a few real violations around unknown writes can go unnoticed; a false one is
  never reported.
* cas: if the compare can hold (absent and expected 0, or expected within [lo, hi]) it is
  taken to succeed: ``(value, max(expected or lo, f) + 1, inf)``; otherwise it is a no-op. (A
  cas whose compare failed is the same as one that did not run, i.e. one deferred to the end.)
* delete: absent ``(None, max(lo, f) + 1, inf)`` if present, a no-op if absent.

A failed/unknown read is dropped. Once the only ops left are unknown ones the search stops
(they are always legal). Unknown ops would otherwise double the search space at every step
(each is applied or still pending), which a non-linearizable history has to exhaust; the
search keeps them cheap (see ``_search``): definite ops are tried first, an unknown op only
when no definite one fits; a configuration is skipped when one with the same definite ops and
state but a subset of its unknown ops already failed; an unknown put/delete is never applied
right after another unknown op; of interchangeable pending unknown ops only the first is
tried. Besides, unknown writes whose effect nothing can have observed are dropped before the
search, as etcd's robustness tests do; dropping one is sound because removing it from a valid
linearization of a correct execution leaves a valid one:

* an unknown put/cas of value v, if no get/failed-cas on the key read v; no other cas on the
  key that returned after it was called (or has an unknown outcome) compares against a
  revision other than 0, one an acknowledged write on the key returned, one a read returned,
  or one at most the header revision of an op on the key that returned before the write was
  called (so no cas can have relied on the unknown revision); and no acknowledged delete with
  deleted=1 on the key returned after it was called that could have needed it to find the key
  present: one is cleared if the acknowledged write just below it in revision order is a put
  or cas and the key has no unknown deletes (only unknown puts/cas can lie in between);
* an unknown delete, if nothing that returned after it was called observed the key absent
  (a get/failed cas reading nothing, delete with deleted=0, a cas with expected 0);
* an unknown cas whose compare can no longer hold when it is called: an op on the key that
  returned before created or read a mod_revision above the expected one (revisions of a key
  only increase, so the cas is a no-op wherever it goes).

Cross-key checks (cheap, outside the search; ``cross_key=False`` turns them off)
-------------------------------------------------------------------------------
Revisions are etcd's store revision, shared by all keys:

1. no two acknowledged writes (put, cas that succeeded, delete with deleted=1) report the same
   revision;
2. real time: if A returned before B was called, B's header revision >= A's, and > if B is an
   acknowledged write (it created a new revision after A's);
3. reads agree with their header revision (MVCC): a get/failed cas at header revision H that
   returned mod_revision m > 0 must not have missed an acknowledged write on the key with a
   revision in (m, H]; the acknowledged write with revision m, if any, must be a put/cas of that
   value on that key; a read of "absent" at H must not find an acknowledged put/cas as the
   key's last acknowledged write at or below H (skipped for keys with unknown deletes); a
   successful cas compares at R - 1, a delete with deleted=0 reads "absent" at R.

These assume what etcd guarantees: header revisions are the store revision the op saw or
created, reads are linearizable (not serializable), each recorded write touches one key, and
nothing outside the history writes the recorded keys (pass ``initial`` for keys that exist
before the history starts).
"""
from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["History", "Op", "Result", "check"]

KINDS = ("put", "get", "cas", "delete")
INF = math.inf
_REV_INF = 1 << 62          # "no upper bound known" for a revision interval
_MAX_REPORTED = 10           # violations of one kind listed before "... and N more"

# compiled op codes for the search
_GET, _PUT, _PUT_U, _CAS, _CAS_U, _DEL1, _DEL0, _DEL_U = range(8)


class _Unread:
    """The value of an unknown write that no read returned (the model cannot tell them apart)."""

    def __repr__(self) -> str:
        return "<a value no read returned>"


_UNREAD = _Unread()


@dataclass
class Op:
    """One recorded operation. ``ret`` is None while the outcome is unknown."""

    id: int
    client: int
    kind: str                          # "put" | "get" | "cas" | "delete"
    key: bytes
    call: float
    ret: float | None = None
    status: str = "pending"            # "pending" | "ok" | "unknown" | "failed" | "rejected"
    # inputs
    value: bytes | None = None         # put / cas: the value written
    expected: int | None = None        # cas: expected mod_revision (0 = key absent)
    # outputs (status "ok")
    revision: int | None = None        # response header revision
    succeeded: bool | None = None      # cas
    read_value: bytes | None = None    # get / failed cas: value read, None if absent
    read_mod: int | None = None        # get / failed cas: mod_revision read, 0 if absent
    deleted: int | None = None         # delete

    @property
    def acked(self) -> bool:
        return self.status == "ok"

    @property
    def is_read(self) -> bool:
        """An acknowledged op whose response carries the key's (value, mod_revision)."""
        return self.acked and (self.kind == "get" or (self.kind == "cas" and not self.succeeded))

    @property
    def mutated(self) -> bool:
        """An acknowledged op that created a new store revision."""
        return self.acked and (
            self.kind == "put"
            or (self.kind == "cas" and bool(self.succeeded))
            or (self.kind == "delete" and self.deleted == 1))

    @property
    def outcome_unknown(self) -> bool:
        """A write that may or may not have taken effect."""
        return self.kind != "get" and self.status in ("pending", "unknown", "failed")


def _b(x):
    return x.encode() if isinstance(x, str) else x


class History:
    """A thread-safe recorder of operations (see the module docstring)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self):
        return iter(list(self.ops))

    # -- recording, live --------------------------------------------------------------------
    def call(self, client: int, kind: str, key: bytes, *, value: bytes | None = None,
             expected: int | None = None, at: float | None = None) -> Op:
        """Record the invocation; returns the token to pass to ok/unknown/failed."""
        if kind not in KINDS:
            raise ValueError(f"unknown op kind {kind!r}")
        if kind in ("put", "cas") and value is None:
            raise ValueError(f"{kind} needs value=")
        if kind == "cas" and (expected is None or expected < 0):
            raise ValueError("cas needs expected= (a mod_revision, 0 for an absent key)")
        t = time.monotonic() if at is None else at
        with self._lock:
            op = Op(id=len(self.ops), client=client, kind=kind, key=_b(key), call=t,
                    value=_b(value), expected=expected)
            self.ops.append(op)
        return op

    def ok(self, token: Op, *, revision: int, value: bytes | None = None,
           mod_revision: int | None = None, succeeded: bool | None = None,
           deleted: int | None = None, at: float | None = None) -> Op:
        """Record a response. get / failed cas: ``value`` (None if absent) and
        ``mod_revision`` (0 if absent) are what was read; ``revision`` is always the header's."""
        op = token
        if op.status != "pending":
            raise ValueError(f"op {op.id} already completed ({op.status})")
        if revision is None:
            raise ValueError("ok() needs the header revision")
        value = _b(value)
        if op.kind == "cas":
            if succeeded is None:
                raise ValueError("cas ok() needs succeeded=")
            op.succeeded = bool(succeeded)
        if op.kind == "get" or (op.kind == "cas" and not op.succeeded):
            if value is None:
                if mod_revision not in (None, 0):
                    raise ValueError("an absent key is read with mod_revision 0")
                mod_revision = 0
            elif mod_revision is None:
                raise ValueError("a read of a present key needs mod_revision=")
            op.read_value, op.read_mod = value, mod_revision
        if op.kind == "delete":
            if deleted is None:
                raise ValueError("delete ok() needs deleted=")
            op.deleted = deleted
        op.revision = revision
        op.ret = time.monotonic() if at is None else at
        if op.ret < op.call:
            raise ValueError(f"op {op.id} returns before it was called")
        op.status = "ok"
        return op

    def unknown(self, token: Op) -> Op:
        """The outcome is unknown (timeout, connection lost): a write may have taken effect."""
        if token.status != "pending":
            raise ValueError(f"op {token.id} already completed ({token.status})")
        token.status = "unknown"
        return token

    def failed(self, token: Op, *, definite: bool = False) -> Op:
        """The op failed. A failed read is dropped. A failed write is treated as unknown
        (errors such as timeouts or a lost leader do not say whether it was applied) unless
        ``definite=True``: the server rejected it before applying it (it is then dropped)."""
        if token.status != "pending":
            raise ValueError(f"op {token.id} already completed ({token.status})")
        token.status = "rejected" if definite else "failed"
        return token

    # -- recording, after the fact ------------------------------------------------------------
    def add_put(self, client, key, value, call, ret, revision=None) -> Op:
        op = self.call(client, "put", key, value=value, at=call)
        return self.unknown(op) if ret is None else self.ok(op, revision=revision, at=ret)

    def add_get(self, client, key, call, ret, value=None, mod_revision=None, revision=None) -> Op:
        op = self.call(client, "get", key, at=call)
        if ret is None:
            return self.failed(op)
        return self.ok(op, value=value, mod_revision=mod_revision, revision=revision, at=ret)

    def add_cas(self, client, key, expected, value, call, ret, succeeded=None, revision=None,
                read_value=None, read_mod=None) -> Op:
        op = self.call(client, "cas", key, value=value, expected=expected, at=call)
        if ret is None:
            return self.unknown(op)
        return self.ok(op, succeeded=succeeded, revision=revision, value=read_value,
                       mod_revision=read_mod, at=ret)

    def add_delete(self, client, key, call, ret, deleted=None, revision=None) -> Op:
        op = self.call(client, "delete", key, at=call)
        return self.unknown(op) if ret is None else self.ok(op, deleted=deleted,
                                                             revision=revision, at=ret)


@dataclass
class Result:
    ok: bool
    violations: list[str] = field(default_factory=list)
    inconclusive: list[str] = field(default_factory=list)   # keys whose search timed out
    stats: dict = field(default_factory=dict)

    def report(self) -> str:
        if self.ok:
            return "linearizable"
        parts = [f"{len(self.violations)} violation(s)"]
        parts += [f"[{i + 1}] {v}" for i, v in enumerate(self.violations)]
        parts += [f"[inconclusive] {v}" for v in self.inconclusive]
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.report()


# -- formatting ---------------------------------------------------------------------------------
def _r(b) -> str:
    s = repr(b)
    return s if len(s) <= 42 else s[:39] + "...'"


class _Fmt:
    def __init__(self, t0: float) -> None:
        self.t0 = t0

    def t(self, x: float | None) -> str:
        return "?" if x is None or x == INF else f"+{x - self.t0:.6f}s"

    def op(self, op: Op) -> str:
        k = _r(op.key)
        if op.kind == "put":
            what = f"put({k}, {_r(op.value)})"
        elif op.kind == "get":
            what = f"get({k})"
        elif op.kind == "cas":
            what = f"cas({k}, if mod_revision=={op.expected} then put {_r(op.value)})"
        else:
            what = f"delete({k})"
        if op.acked:
            if op.kind == "put":
                out = f"revision {op.revision}"
            elif op.kind == "delete":
                out = f"deleted={op.deleted}, revision {op.revision}"
            elif op.kind == "cas" and op.succeeded:
                out = f"succeeded, revision {op.revision}"
            else:
                read = ("nothing (absent)" if op.read_value is None
                        else f"{_r(op.read_value)} mod_revision={op.read_mod}")
                out = (("failed, read " if op.kind == "cas" else "")
                       + f"{read}, header revision {op.revision}")
        else:
            out = "outcome unknown"
        return (f"op#{op.id} client {op.client} {what} "
                f"[{self.t(op.call)} .. {self.t(op.ret)}] -> {out}")


def _fmt_state(s) -> str:
    v, lo, hi = s
    if lo == hi:
        rev = f"{lo}"
    elif hi >= _REV_INF:
        rev = f">= {lo} (exact value unknown)"
    else:
        rev = f"in [{lo}, {hi}]"
    if v is None:
        return "absent" + ("" if hi == 0 else f" (last deleted at revision {rev})")
    return f"{_r(v)} with mod_revision {rev}"


# -- the per-key search ------------------------------------------------------------------------
def _compile(op: Op, floor: int = 0):
    """(code, value, revision, expected) for the search. For an unknown write, ``revision`` is
    the real-time floor: its revision, if it took effect, is above it."""
    if op.kind == "get" or (op.kind == "cas" and op.acked and not op.succeeded):
        return (_GET, op.read_value, op.read_mod, None)
    if op.kind == "put":
        return (_PUT, op.value, op.revision, None) if op.acked else (_PUT_U, op.value, floor, None)
    if op.kind == "cas":
        return ((_CAS, op.value, op.revision, op.expected) if op.acked
                else (_CAS_U, op.value, floor, op.expected))
    if op.acked:
        return (_DEL1, None, op.revision, None) if op.deleted == 1 else (_DEL0, None, None, None)
    return (_DEL_U, None, floor, None)


def _step(c, s):
    """The model: the state after the compiled op ``c`` in state ``s``, or None if illegal."""
    code, a, r, e = c
    v, lo, hi = s
    if code == _GET:
        if a is None:
            return s if v is None else None
        if v is not None and v == a and lo <= r <= hi:
            return s if lo == hi else (v, r, r)
        return None
    if code == _PUT:
        return (a, r, r) if r > lo else None
    if code == _PUT_U:
        return (a, max(lo, r) + 1, _REV_INF)
    if code == _CAS:
        if e == 0:
            return (a, r, r) if v is None and r > lo else None
        return (a, r, r) if v is not None and lo <= e <= hi and r > e else None
    if code == _CAS_U:
        if e == 0:
            return (a, max(lo, r) + 1, _REV_INF) if v is None else s
        return (a, max(e, r) + 1, _REV_INF) if v is not None and lo <= e <= hi else s
    if code == _DEL1:
        return (None, r, r) if v is not None and r > lo else None
    if code == _DEL0:
        return s if v is None else None
    # _DEL_U
    return (None, max(lo, r) + 1, _REV_INF) if v is not None else s


def _cap(c) -> int:
    """The highest lower revision bound of the state at which the definite op ``c`` can still be
    legal. The bound never decreases along a linearization (every step keeps or raises it)."""
    code, a, r, e = c
    if code == _GET:
        return _REV_INF if a is None else r
    if code == _PUT or code == _DEL1:
        return r - 1
    if code == _CAS:
        return r - 1 if e == 0 else (e if r > e else -1)
    return _REV_INF


def _why(op: Op, c, s) -> str:
    """Why ``op`` cannot be linearized in state ``s`` (for reports)."""
    if _step(c, s) is not None:
        return "legal here, but every continuation after it fails"
    code, a, r, e = c
    v, lo, hi = s
    st = _fmt_state(s)
    if code == _GET:
        got = "nothing (absent)" if a is None else f"{_r(a)} mod_revision={r}"
        return f"read {got}, but the key is {st}"
    if code == _PUT:
        return f"acknowledged revision {r}, but the key is {st}; a key's revisions only increase"
    if code == _CAS:
        if e == 0:
            if v is not None:
                return f"compare 'key absent' succeeded, but the key is {st}"
            return f"acknowledged revision {r}, not above the key's last deletion ({st})"
        if v is None:
            return f"compare mod_revision=={e} succeeded, but the key is {st}"
        if not lo <= e <= hi:
            return f"compare mod_revision=={e} succeeded, but the key is {st}"
        return f"acknowledged revision {r} is not above the compared mod_revision {e}"
    if code == _DEL1:
        if v is None:
            return f"deleted=1, but the key is {st}"
        return f"acknowledged revision {r}, but the key is already {st}"
    if code == _DEL0:
        return f"deleted=0, but the key is {st}"
    return "?"


class _Timeout(Exception):
    pass


def _search(ops: list[Op], init, deadline: float | None, floor):
    """Porcupine's checkSingle, with unknown ops tried last and pruned by dominance.

    Returns (True, None) or (False, (bits, state, tail)) for the report. A configuration is
    (definite ops linearized, unknown ops linearized, state). Differences from porcupine:

    * Unknown ops have no return entry (it would be at +infinity): they live in a second
      linked list, in call order, and one is a candidate if it was called before the first
      return entry of the main list.
    * At each point the definite ops that may come next are tried before the unknown ones, and
      an unknown op is tried only if no definite op works.
    * The search only builds linearizations in a normal form: no unknown op that leaves the
      state unchanged (deferring it to the end is the same), and no unknown put or delete right
      after another unknown op (applying only the second one leaves the same value with a
      looser revision bound, from which every step is at least as permissive, so the first one
      can be deferred; repeat until none is left). Without the second rule a dead end with k
      unknown ops pending explores all 2^k subsets of them.
    * Instead of a cache of configurations entered, a configuration whose subtree failed is
      remembered, and one with the same definite ops and state and a superset of its unknown
      ops is skipped: unknown ops never hold back anyone and are legal in every state, so
      whatever continuation works with more of them applied works with the extra ones deferred
      to the end. A failure found right after an unknown op (where the normal form forbids an
      unknown put/delete) only covers configurations reached the same way: that flag is kept
      as one more bit beside the unknown ops. (Unknown ops equal: porcupine's exact cache.)
    * A definite op that is legal and leaves the state as it is (a read that matches, a delete
      of an absent key) is forced: any linearization placing it later still works with it moved
      to the current point (its call precedes every pending return, and it changes nothing), so
      if the configuration after it fails, the one before it fails too, and its siblings need
      not be tried. Concurrent reads would otherwise be linearized in every subset order.
    * Symmetry: an unknown write whose value no read returned is compiled with one shared
      placeholder value (no step can tell those values apart). Two pending unknown ops with the
      same compiled effect whose real-time floors are both <= the state's lower revision bound
      behave the same in the whole subtree (that bound never decreases along a path), so only
      the one called first is tried; any linearization using the other swaps them. Without it
      k interchangeable unknown deletes (or unread puts) pending make k-fold branching at
      every dead end, compounding as the search backtracks.
    * Doomed configurations are dead ends at once: the state's lower revision bound never
      decreases, so a pending definite op that needs it lower (a put or delete with a revision
      not above it, a read of a mod_revision below it, a cas comparing against one below it)
      can never be linearized. Porcupine would only find out at that op's return entry, after
      exploring every interleaving of the ops in between.
    """
    n = len(ops)
    comp = [_compile(op, floor(op.call)) for op in ops]
    finite = [op.ret is not None for op in ops]
    calls = [op.call for op in ops]
    # a value no read returned cannot be observed: all such values are one to the model
    read = {op.read_value for op in ops if op.is_read}
    for i, c in enumerate(comp):
        if not finite[i] and c[1] is not None and c[1] not in read:
            comp[i] = (c[0], _UNREAD, c[2], c[3])
    # main list: node 0 = head, 2i+1 = call of definite op i, 2i+2 = its return, 2n+1 = tail
    events = []
    for i, op in enumerate(ops):
        if finite[i]:
            events.append((op.call, 0, 2 * i + 1))
            events.append((op.ret, 1, 2 * i + 2))
    events.sort()                      # at equal times calls come first (treated as concurrent)
    tail = 2 * n + 1
    nxt = [0] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    last = 0
    for _, _, node in events:
        nxt[last] = node
        prv[node] = last
        last = node
    nxt[last] = tail
    prv[tail] = last
    when = [0.0] * (2 * n + 2)         # time of a return entry
    for t, _, node in events:
        when[node] = t
    # unknown list: node 0 = head, i+1 = unknown op i, n+1 = tail
    unk = sorted((op.call, i + 1) for i, op in enumerate(ops) if not finite[i])
    utail = n + 1
    unxt = [0] * (n + 2)
    uprv = [0] * (n + 2)
    last = 0
    for _, node in unk:
        unxt[last] = node
        uprv[node] = last
        last = node
    unxt[last] = utail
    uprv[utail] = last
    # the previous unknown op (in call order) with the same effect, -1 if none
    twin = [-1] * n
    latest: dict[tuple, int] = {}
    for _, node in unk:
        code, a, _f, e = comp[node - 1]
        twin[node - 1] = latest.get((code, a, e), -1)
        latest[(code, a, e)] = node - 1

    # pending definite ops' caps (see _cap) in a min segment tree: a state whose lower revision
    # bound exceeds one of them is doomed, the op can never be linearized after it
    size = 1
    while size < n:
        size *= 2
    seg = [_REV_INF] * (2 * size)
    caps = [_cap(c) if finite[i] else _REV_INF for i, c in enumerate(comp)]
    seg[size:size + n] = caps
    for p in range(size - 1, 0, -1):
        seg[p] = min(seg[2 * p], seg[2 * p + 1])

    remaining = sum(finite)
    if remaining == 0:
        return True, None
    if init[1] > seg[1]:
        return False, (0, init, ())
    restricted = 1 << n                # flag beside ubits: the last op applied was unknown
    state = init
    dbits = ubits = 0                  # definite / unknown ops linearized
    stack: list[tuple] = []            # (op, state before, phase or 2 if forced, due)
    failed: dict[tuple, list[int]] = {}
    best = (2 * remaining + 2, 0, init, ())
    entry = nxt[0]
    phase = 0                          # 0: trying definite ops, 1: trying unknown ones
    due = 0.0                          # in phase 1: time of the first return entry
    iters = 0
    while True:
        if deadline is not None and (iters & 4095) == 0 and time.monotonic() > deadline:
            raise _Timeout
        iters += 1
        if phase == 0:
            if entry & 1:                               # a call entry
                i = entry >> 1
                ns = _step(comp[i], state)
                if ns is not None:
                    nd = dbits | (1 << i)
                    seen = failed.get((nd, ns))
                    if seen is None or not any(u & ~ubits == 0 for u in seen):
                        stack.append((i, state, 2 if ns is state else 0, 0.0))
                        state, dbits = ns, nd
                        r = entry + 1               # lift the call and its return
                        p, q = prv[entry], nxt[entry]
                        nxt[p] = q
                        prv[q] = p
                        p, q = prv[r], nxt[r]
                        nxt[p] = q
                        prv[q] = p
                        remaining -= 1
                        if remaining == 0:
                            return True, None
                        p = size + i
                        seg[p] = _REV_INF
                        p >>= 1
                        while p:
                            seg[p] = min(seg[2 * p], seg[2 * p + 1])
                            p >>= 1
                        if ns[1] > seg[1]:          # doomed
                            phase, entry = 1, utail
                            continue
                        entry = nxt[0]
                        continue
                entry = nxt[entry]
                continue
            # the first return entry: no definite op fits, try unknown ones
            phase, due, entry = 1, when[entry], unxt[0]
            continue
        # phase 1: entry walks the unknown list
        if entry != utail and calls[entry - 1] <= due:
            i = entry - 1
            c = comp[i]
            ok = c[0] == _CAS_U or not stack or finite[stack[-1][0]]
            if ok and c[2] <= state[1]:
                # a pending twin called earlier (so with a floor <= this one's) behaves the
                # same from here on: only the first of them is tried
                j = twin[i]
                while j >= 0:
                    if not ubits >> j & 1:
                        ok = False
                        break
                    j = twin[j]
            if ok:
                ns = _step(c, state)
                if ns != state:
                    nu = ubits | (1 << i)
                    seen = failed.get((dbits, ns))
                    if seen is None or not any(u & ~(nu | restricted) == 0 for u in seen):
                        stack.append((i, state, 1, due))
                        state, ubits = ns, nu
                        p, q = uprv[entry], unxt[entry]
                        unxt[p] = q
                        uprv[q] = p
                        if ns[1] > seg[1]:          # doomed
                            entry = utail
                            continue
                        entry = nxt[0]
                        phase = 0
                        continue
            entry = unxt[entry]
            continue
        # dead end: backtrack
        # the most definite ops, preferably not followed by unknown ones (clearer to report)
        score = 2 * remaining + bool(stack and not finite[stack[-1][0]])
        if score < best[0]:
            best = (score, dbits | ubits, state, tuple(s[0] for s in stack[-3:]))
        failed.setdefault((dbits, state), []).append(
            ubits | restricted if stack and not finite[stack[-1][0]] else ubits)
        if not stack:
            return False, best[1:]
        i, state, phase, due = stack.pop()
        if phase != 1:
            dbits ^= 1 << i
            remaining += 1
            p = size + i
            seg[p] = caps[i]
            p >>= 1
            while p:
                seg[p] = min(seg[2 * p], seg[2 * p + 1])
                p >>= 1
            c = 2 * i + 1
            r = c + 1
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[c]] = c
            prv[nxt[c]] = c
            entry = nxt[c]
            if phase == 2:             # the op was forced: the configuration before it fails too
                phase, entry = 1, utail
        else:
            ubits ^= 1 << i
            u = i + 1
            unxt[uprv[u]] = u
            uprv[unxt[u]] = u
            entry = unxt[u]


def _explain(key, ops: list[Op], init, floor, bits, state, tail, fmt: _Fmt) -> str:
    n = len(ops)
    done = [bool(bits >> i & 1) for i in range(n)]
    comp = [_compile(op, floor(op.call)) for op in ops]
    written = {op.value for op in ops if op.kind in ("put", "cas")}
    if init[0] is not None:
        written.add(init[0])

    def item(i: int) -> str:
        op = ops[i]
        why = _why(op, comp[i], state)
        if op.is_read and op.read_value is not None and op.read_value not in written:
            why += " (no put/cas on this key in the history writes that value)"
        return f"  - {fmt.op(op)}: {why}"

    lines = [f"key {_r(key)}: the {n} ops on this key are not linearizable."]
    if any(done):
        lines.append(f"The longest explored linearization takes {sum(done)} of them, ending "
                     "with:")
        lines += [f"    {fmt.op(ops[j])}" for j in tail]
        lines.append(f"after which the key is {_fmt_state(state)}.")
    else:
        lines.append(f"No op can take effect first; the key starts {_fmt_state(state)}.")
    pending = [i for i in range(n) if not done[i]]
    doomed = [i for i in pending if ops[i].ret is not None and _cap(comp[i]) < state[1]]
    if doomed:
        lines.append("A key's revision never decreases, so these ops can no longer take "
                     "effect, and every other way to linearize the ops before fails as well:")
        lines += [item(i) for i in doomed[:8]]
        if len(doomed) > 8:
            lines.append(f"  ... and {len(doomed) - 8} more")
        return "\n".join(lines)
    finite = [i for i in pending if ops[i].ret is not None]
    d = min(finite, key=lambda i: ops[i].ret)
    lines.append(f"{fmt.op(ops[d])} returned at {fmt.t(ops[d].ret)}, so it must take effect by "
                 "then, but no op that could take effect next is legal:")
    cands = [i for i in pending if ops[i].call <= ops[d].ret and ops[i].ret is not None]
    cands.sort(key=lambda i: (i != d, ops[i].call))
    unknown = [i for i in pending if ops[i].call <= ops[d].ret and ops[i].ret is None]
    lines += [item(i) for i in cands[:8]]
    if len(cands) > 8:
        lines.append(f"  ... and {len(cands) - 8} more")
    # unknown writes that would let the blocked op take effect: say where that leads
    helps = []
    for u in unknown:
        s1 = _step(comp[u], state)
        s2 = None if s1 is None or s1 == state else _step(comp[d], s1)
        if s2 is not None:
            helps.append((u, s2))
    shown = helps[-3:]
    for u, s2 in shown:
        lines.append(f"  - if {fmt.op(ops[u])} took effect first, op#{ops[d].id} could, "
                     f"leaving the key {_fmt_state(s2)}; but then no linearization works")
        late = [i for i in pending
                if ops[i].ret is not None and i != d and _cap(comp[i]) < s2[1]]
        for i in late[:3]:
            lines.append(f"      e.g. {fmt.op(ops[i])} could no longer take effect: "
                         f"{_why(ops[i], comp[i], s2)}")
    others = [u for u in unknown if u not in {h for h, _ in shown}]
    if others:
        lines.append(f"  ({len(others)} other write(s) with unknown outcome could also take "
                     "effect here; no linearization with any of them works either, e.g.:")
        lines += [f"    {fmt.op(ops[i])}" for i in others[-3:]]
        lines[-1] += ")"
    return "\n".join(lines)


def _rt_floor(ops: list[Op]):
    """call time -> the highest header revision of an op in ``ops`` that returned before it (0
    if none): in etcd, a write called then gets a higher revision."""
    done = sorted((op.ret, op.revision) for op in ops if op.acked)
    rets = [r for r, _ in done]
    tops = list(itertools.accumulate((rev for _, rev in done), max))

    def floor(t: float) -> int:
        k = bisect.bisect_left(rets, t)
        return tops[k - 1] if k else 0
    return floor


def _droppable_unknowns(ops: list[Op], init, floor) -> set[int]:
    """Ids of unknown writes nothing can have observed (see the module docstring)."""
    read_values = {op.read_value for op in ops if op.is_read and op.read_value is not None}
    explained = {0} | {op.revision for op in ops if op.mutated}
    explained |= {op.read_mod for op in ops if op.is_read}
    if init[0] is not None:
        explained.add(init[1])
    # cas ops that may have compared against an unknown write's revision, and when they ended
    guesses = [(op.id, INF if op.ret is None else op.ret, op.expected) for op in ops
               if op.kind == "cas" and (op.outcome_unknown or op.succeeded)
               and op.expected not in explained]
    # deletes (deleted=1) that may have needed an unknown write to find the key present: all,
    # if the key has unknown deletes; else those whose preceding acknowledged write (by
    # revision) is a delete or missing (unknown puts/cas can be all that lie in between)
    writes = sorted((op.revision, op.kind != "delete") for op in ops if op.mutated)
    if init[0] is not None:
        writes.insert(0, (init[1], True))
    wrevs = [r for r, _ in writes]
    unknown_deletes = any(op.kind == "delete" and op.outcome_unknown for op in ops)
    needy_del1 = []
    for op in ops:
        if op.acked and op.kind == "delete" and op.deleted == 1:
            k = bisect.bisect_left(wrevs, op.revision)
            if unknown_deletes or not k or not writes[k - 1][1]:
                needy_del1.append(op.ret)
    last_del1 = max(needy_del1, default=-INF)
    absent_obs = [INF if op.ret is None else op.ret for op in ops
                  if (op.is_read and op.read_value is None)
                  or (op.acked and op.kind == "delete" and op.deleted == 0)
                  or (op.kind == "cas" and op.expected == 0
                      and (op.outcome_unknown or op.succeeded))]
    last_absent = max(absent_obs, default=-INF)
    # the key's mod_revision (or last deletion) never goes below what an op that returned saw
    # or made; a cas comparing against a lower revision than that can no longer succeed
    pinned = sorted((op.ret, op.revision if op.mutated else op.read_mod) for op in ops
                    if op.mutated or op.is_read)
    pin_rets = [r for r, _ in pinned]
    pin_tops = list(itertools.accumulate((m for _, m in pinned), max))
    drop = set()
    for op in ops:
        if not op.outcome_unknown:
            continue
        if op.kind == "cas" and op.expected > 0:
            k = bisect.bisect_left(pin_rets, op.call)
            if k and pin_tops[k - 1] > op.expected:
                drop.add(op.id)
                continue
        if op.kind in ("put", "cas"):
            f = floor(op.call)                         # its revision is above f
            if (op.value not in read_values and last_del1 <= op.call
                    and not any(r > op.call and e > f for i, r, e in guesses if i != op.id)):
                drop.add(op.id)
        elif last_absent <= op.call:
            drop.add(op.id)
    return drop


# -- static and cross-key checks ------------------------------------------------------------------
def _static(ops: list[Op], fmt: _Fmt) -> list[str]:
    out = []
    for op in ops:
        if not op.acked:
            continue
        if op.revision < 0:
            out.append(f"{fmt.op(op)}: negative header revision")
        if op.mutated and op.revision < 1:
            out.append(f"{fmt.op(op)}: a write must create a revision >= 1")
        if op.is_read:
            if op.read_value is not None and op.read_mod < 1:
                out.append(f"{fmt.op(op)}: a present key read with mod_revision {op.read_mod}")
            if op.read_mod > op.revision:
                out.append(f"{fmt.op(op)}: read mod_revision {op.read_mod} is above the header "
                           f"revision {op.revision} it was read at")
            if op.kind == "cas" and op.read_mod == op.expected:
                out.append(f"{fmt.op(op)}: the compare failed, yet the Else branch read "
                           f"mod_revision {op.read_mod}, the expected one")
        if op.kind == "cas" and op.succeeded and op.revision <= op.expected:
            out.append(f"{fmt.op(op)}: succeeded with revision {op.revision}, not above the "
                       f"compared mod_revision {op.expected}")
        if op.kind == "delete" and op.deleted not in (0, 1):
            out.append(f"{fmt.op(op)}: a single-key delete reported deleted={op.deleted}")
    return out


def _capped(title: str, items: list[str]) -> list[str]:
    if len(items) <= _MAX_REPORTED:
        return items
    return items[:_MAX_REPORTED] + [f"{title}: ... and {len(items) - _MAX_REPORTED} more"]


def _unique_revisions(ops: list[Op], fmt: _Fmt) -> list[str]:
    by_rev = defaultdict(list)
    for op in ops:
        if op.mutated:
            by_rev[op.revision].append(op)
    out = [f"revision {rev} was reported by {len(w)} acknowledged writes:\n"
           + "\n".join(f"    {fmt.op(op)}" for op in w)
           for rev, w in sorted(by_rev.items()) if len(w) > 1]
    return _capped("duplicate revisions", out)


def _realtime_revisions(ops: list[Op], fmt: _Fmt) -> list[str]:
    timed = [op for op in ops if op.acked]
    by_ret = sorted(timed, key=lambda op: op.ret)
    j, top = 0, None
    out = []
    for b in sorted(timed, key=lambda op: op.call):
        while j < len(by_ret) and by_ret[j].ret < b.call:
            a = by_ret[j]
            if top is None or a.revision > top.revision:
                top = a
            j += 1
        if top is None:
            continue
        if b.mutated and b.revision <= top.revision:
            out.append(f"revision order violates real time: {fmt.op(b)} is a write called after "
                       f"{fmt.op(top)} returned, so its revision must exceed {top.revision}")
        elif b.revision < top.revision:
            out.append(f"revision went backwards in real time: {fmt.op(b)} was called after "
                       f"{fmt.op(top)} returned, so its header revision must be >= "
                       f"{top.revision}")
    return _capped("real-time revision order", out)


def _read_revisions(ops: list[Op], initial: dict, fmt: _Fmt) -> list[str]:
    writes = {op.revision: op for op in ops if op.mutated}
    per_key = defaultdict(list)              # key -> sorted [(revision, present?, op)]
    for op in writes.values():
        per_key[op.key].append((op.revision, op.kind != "delete", op))
    for key, (v, m) in initial.items():
        if v is not None:
            per_key[key].append((m, True, None))
    for lst in per_key.values():
        lst.sort(key=lambda x: x[0])
    revs = {k: [x[0] for x in lst] for k, lst in per_key.items()}
    unknown_deletes = {op.key for op in ops if op.kind == "delete" and op.outcome_unknown}
    out = []

    def observe(op, at, present, m, value):
        lst, rv = per_key.get(op.key, []), revs.get(op.key, [])
        if present:
            w = writes.get(m)
            if w is not None and (w.key != op.key or w.kind == "delete"
                                  or (value is not None and w.value != value)):
                out.append(f"{fmt.op(op)} observed mod_revision {m}, but revision {m} was "
                           f"created by {fmt.op(w)}")
            k = bisect.bisect_right(rv, m)
            if k < len(rv) and rv[k] <= at:
                w = lst[k][2]
                by = "the initial state" if w is None else fmt.op(w)
                out.append(f"{fmt.op(op)} observed mod_revision {m} at store revision {at}, "
                           f"missing {by} (revision {rv[k]}, in ({m}, {at}])")
        elif op.key not in unknown_deletes:
            k = bisect.bisect_right(rv, at)
            if k and lst[k - 1][1]:
                w = lst[k - 1][2]
                by = "the initial state" if w is None else fmt.op(w)
                out.append(f"{fmt.op(op)} observed the key absent at store revision {at}, but "
                           f"its last acknowledged write at or below {at} is {by}")

    for op in ops:
        if op.is_read:
            observe(op, op.revision, op.read_value is not None, op.read_mod, op.read_value)
        elif op.acked and op.kind == "cas" and op.succeeded:
            observe(op, op.revision - 1, op.expected != 0, op.expected, None)
        elif op.acked and op.kind == "delete" and op.deleted == 0:
            observe(op, op.revision, False, 0, None)
    return _capped("reads vs header revisions", out)


# -- entry point -----------------------------------------------------------------------------------
def cas_outcome(resp) -> dict:
    """``History.ok`` arguments for the answer of a cas sent as a TxnResponse (If mod(k) ==
    expected Then Put Else Range): succeeded, or the Else branch's read."""
    if resp.succeeded:
        return {"revision": resp.header.revision, "succeeded": True}
    kvs = resp.responses[0].response_range.kvs
    return {"revision": resp.header.revision, "succeeded": False,
            "value": kvs[0].value if kvs else None, "mod_revision": kvs[0].mod_revision if kvs else 0}


def check(history: History | Iterable[Op], *, initial: dict | None = None,
          cross_key: bool = True, timeout: float | None = None) -> Result:
    """Check a history. ``initial`` maps keys existing before the history to (value,
    mod_revision); other keys start absent. ``timeout`` (seconds, for the whole check) turns a
    search that runs out of time into an ``inconclusive`` entry (and ``ok`` False)."""
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    all_ops = list(history)
    initial = {_b(k): (_b(v), m) for k, (v, m) in (initial or {}).items()}
    # failed or unknown reads and writes the server definitely rejected have no effect
    ops = [op for op in all_ops
           if op.status == "ok" or (op.kind != "get" and op.status != "rejected")]
    fmt = _Fmt(min((op.call for op in ops), default=0.0))
    violations = _static(ops, fmt)
    if cross_key:
        violations += _unique_revisions(ops, fmt)
        violations += _realtime_revisions(ops, fmt)
        violations += _read_revisions(ops, initial, fmt)
    by_key = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    stats = {"ops": len(all_ops), "checked": len(ops), "keys": len(by_key),
             "unknown_dropped": 0, "unknown_kept": 0}
    inconclusive = []
    global_floor = _rt_floor(ops) if cross_key else None
    for key in sorted(by_key):
        kops = by_key[key]
        v, m = initial.get(key, (None, 0))
        init = (v, m, m)
        floor = global_floor or _rt_floor(kops)
        drop = _droppable_unknowns(kops, init, floor)
        kops = [op for op in kops if op.id not in drop]
        stats["unknown_dropped"] += len(drop)
        stats["unknown_kept"] += sum(op.outcome_unknown for op in kops)
        try:
            ok, info = _search(kops, init, deadline, floor)
        except _Timeout:
            inconclusive.append(f"key {_r(key)}: search of {len(kops)} ops timed out")
            continue
        if not ok:
            violations.append(_explain(key, kops, init, floor, *info, fmt))
    stats["seconds"] = time.monotonic() - start
    return Result(ok=not violations and not inconclusive, violations=violations,
                  inconclusive=inconclusive, stats=stats)
