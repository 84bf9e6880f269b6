"""Seeded random etcd KV request sequences over a small keyspace, where keys collide.

Every request is expressed in *logical* revisions: the harness maps them onto each server's
real revisions (see ``harness.py``), so a sequence means the same thing on a fresh etcd and on
servers that have already served other sequences. A positive revision field is logical; zero
and negative values keep their API meaning (current / no filter) and are sent unchanged.

The generator is driven by what the reference (etcd) answered: ``observe`` tells it the current
and compacted revisions and every KeyValue it saw, so that historical reads, compactions and
compares hit interesting values (a key's real mod revision, the compaction point, one past the
current revision...) instead of random numbers. Given a seed and etcd's answers the sequence is
fully determined; the harness prints the requests actually sent, so a failure is reproducible
without the generator.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from google.protobuf import text_format

from kvstore.api import kv_pb2, rpc_pb2 as pb

MAX_TXN_OPS = 128  # etcd's --max-txn-ops default (and kvstore's)

RangeRequest, PutRequest, DeleteRangeRequest = pb.RangeRequest, pb.PutRequest, pb.DeleteRangeRequest
TxnRequest, CompactionRequest, Compare, RequestOp = (pb.TxnRequest, pb.CompactionRequest,
                                                     pb.Compare, pb.RequestOp)

METHODS = {
    "Range": RangeRequest,
    "Put": PutRequest,
    "DeleteRange": DeleteRangeRequest,
    "Txn": TxnRequest,
    "Compact": CompactionRequest,
}
_METHOD_OF = {cls: name for name, cls in METHODS.items()}

SORT_ORDERS = [RangeRequest.NONE, RangeRequest.ASCEND, RangeRequest.DESCEND]
SORT_TARGETS = [RangeRequest.KEY, RangeRequest.VERSION, RangeRequest.CREATE, RangeRequest.MOD,
                RangeRequest.VALUE]
CMP_TARGETS = [Compare.VERSION, Compare.CREATE, Compare.MOD, Compare.VALUE, Compare.LEASE]
CMP_RESULTS = [Compare.EQUAL, Compare.GREATER, Compare.LESS, Compare.NOT_EQUAL]
_UNION_FIELD = {Compare.VERSION: "version", Compare.CREATE: "create_revision",
                Compare.MOD: "mod_revision", Compare.VALUE: "value", Compare.LEASE: "lease"}

# Key suffixes under the per-sequence namespace: shared prefixes, so ranges and prefix ranges
# overlap in many ways.
KEY_SUFFIXES = [b"a", b"ab", b"abc", b"b", b"ba", b"c", b"k/1", b"k/2"]
SMALL_VALUES = [b"", b"v0", b"v1", b"v2", b"a", b"zz", b"\x00\xff", b"v1\x00"]
NO_SUCH_LEASE = 0x1234  # leases are not implemented yet: any nonzero lease is "not found"


def prefix_end(key: bytes) -> bytes:
    """etcd's GetPrefixRangeEnd: the smallest key greater than every key with this prefix."""
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[:i + 1])
    return b"\x00"  # all 0xff: everything from key on


# -- request builders (used by the generator and by the hand-written scenarios) -------------------

def put(key: bytes, value: bytes = b"", **kw) -> PutRequest:
    return PutRequest(key=key, value=value, **kw)


def rng(key: bytes, range_end: bytes = b"", **kw) -> RangeRequest:
    return RangeRequest(key=key, range_end=range_end, **kw)


def delete(key: bytes, range_end: bytes = b"", **kw) -> DeleteRangeRequest:
    return DeleteRangeRequest(key=key, range_end=range_end, **kw)


def compact(revision: int, physical: bool = False) -> CompactionRequest:
    return CompactionRequest(revision=revision, physical=physical)


def cmp(key: bytes, target: str, result: str, value=0, range_end: bytes = b"",
        union: str | None = None) -> Compare:
    """``cmp(k, "MOD", "EQUAL", 5)``; ``union`` puts the value in another oneof field than the
    target's own (etcd then compares against zero)."""
    t = Compare.CompareTarget.Value(target)
    c = Compare(key=key, range_end=range_end, target=t, result=Compare.CompareResult.Value(result))
    setattr(c, union or _UNION_FIELD[t], value)
    return c


def op(request) -> RequestOp:
    """Wraps a request as a txn RequestOp; ``op(None)`` is the empty op."""
    if request is None:
        return RequestOp()
    if isinstance(request, RangeRequest):
        return RequestOp(request_range=request)
    if isinstance(request, PutRequest):
        return RequestOp(request_put=request)
    if isinstance(request, DeleteRangeRequest):
        return RequestOp(request_delete_range=request)
    if isinstance(request, TxnRequest):
        return RequestOp(request_txn=request)
    raise TypeError(request)


def txn(compare=(), success=(), failure=()) -> TxnRequest:
    return TxnRequest(compare=list(compare), success=[op(r) for r in success],
                      failure=[op(r) for r in failure])


# -- operations ---------------------------------------------------------------------------------

@dataclass
class Op:
    """One request of a sequence: the KV method and its request (logical revisions)."""

    method: str
    request: object
    note: str = ""  # what the generator meant to exercise, for humans

    @classmethod
    def of(cls, request, note: str = "") -> Op:
        return cls(_METHOD_OF[type(request)], request, note)

    def text(self) -> str:
        """One line, parseable by ``parse_op``."""
        return f"{self.method} {{{text_format.MessageToString(self.request, as_one_line=True)}}}"

    def __repr__(self) -> str:
        text = self.text()
        return f"<Op {text[:200]}{'...' if len(text) > 200 else ''}>"


def parse_op(line: str) -> Op:
    method, _, body = line.strip().partition(" ")
    body = body.strip()
    assert body.startswith("{") and body.endswith("}"), line
    return Op(method, text_format.Parse(body[1:-1], METHODS[method]()))


# -- the generator --------------------------------------------------------------------------------

@dataclass
class _KeyInfo:
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""


@dataclass
class SequenceGenerator:
    """Random requests over ``namespace`` + KEY_SUFFIXES; call ``next_op`` then ``observe``.

    ``current_rev``/``compact_rev`` are logical: after the harness's barrier a sequence starts
    at revision 2 with revision 2 compacted, as on a fresh etcd after one put and a compaction.
    """

    seed: int
    namespace: bytes
    current_rev: int = 2
    compact_rev: int = 2  # -1: never compacted
    note: str = field(init=False, default="")
    rnd: random.Random = field(init=False)
    keys: list[bytes] = field(init=False)
    known: dict[bytes, _KeyInfo] = field(init=False, default_factory=dict)
    revs_seen: set[int] = field(init=False, default_factory=set)

    def __post_init__(self):
        self.rnd = random.Random(self.seed)
        self.keys = [self.namespace + s for s in KEY_SUFFIXES]

    # -- feedback ----------------------------------------------------------------------------

    def observe(self, op: Op, response, error: bool) -> None:
        """What etcd answered to ``op`` (a response message, or None with error=True)."""
        if error or response is None:
            return
        rev = response.header.revision
        if rev > 0:
            self.current_rev = rev
            self.revs_seen.add(rev)
        if op.method == "Compact":
            self.compact_rev = op.request.revision
        elif op.method == "Put":
            info = self.known.setdefault(op.request.key, _KeyInfo())
            info.mod_revision = rev
            if not op.request.ignore_value:
                info.value = op.request.value
        self._collect(response)

    def _collect(self, msg) -> None:
        for fd, value in msg.ListFields():
            if fd.message_type is None:
                continue
            items = value if fd.is_repeated else [value]
            for item in items:
                if isinstance(item, kv_pb2.KeyValue):
                    if item.key and item.mod_revision > 0:
                        self.known[item.key] = _KeyInfo(item.create_revision, item.mod_revision,
                                                        item.version, item.value)
                        self.revs_seen.update((item.create_revision, item.mod_revision))
                else:
                    self._collect(item)

    # -- choices -----------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rnd.random() < p

    def key(self, empty_p: float = 0.0) -> bytes:
        if empty_p and self.chance(empty_p):
            return b""
        return self.rnd.choice(self.keys)

    def value(self) -> bytes:
        r = self.rnd.random()
        if r < 0.08:
            return b"L" * self.rnd.randint(1000, 6000)  # large-ish
        if r < 0.15:
            return bytes(self.rnd.randrange(256) for _ in range(self.rnd.randint(1, 12)))
        return self.rnd.choice(SMALL_VALUES)

    def key_range(self) -> tuple[bytes, bytes]:
        """(key, range_end) in one of the API's forms."""
        ns = self.namespace
        r = self.rnd.random()
        if r < 0.35:
            return self.key(), b""  # single key
        if r < 0.50:  # [k1, k2) over the pool, either order (key > range_end: empty)
            a, b = self.key(), self.key()
            if self.chance(0.8) and a > b:
                a, b = b, a
            return a, b
        if r < 0.65:  # prefix of a key (a, ab, abc share prefixes)
            k = self.key()
            k = k[:self.rnd.randint(len(ns) + 1, len(k))]
            return k, prefix_end(k)
        if r < 0.75:
            return self.key(), b"\x00"  # every key >= key
        if r < 0.85:
            return ns, prefix_end(ns)  # the whole namespace
        if r < 0.92:  # ends between the pool's keys
            between = [b"aa", b"b", b"b\x00", b"bb", b"d", b"k/", b"k0"]
            return self.key(), ns + self.rnd.choice(between)
        a, b = self.key(), self.key()  # key > range_end, or key == range_end
        return max(a, b), min(a, b)

    def revision(self) -> int:
        """A logical revision to read at: current, historical, compacted, future..."""
        cur, comp = self.current_rev, self.compact_rev
        r = self.rnd.random()
        if r < 0.15:
            return 0
        if r < 0.50:  # historical, still readable
            lo = max(comp, 1)
            return self.rnd.randint(lo, cur) if lo <= cur else cur
        if r < 0.60:
            return cur
        if r < 0.70 and comp > 1:
            return comp  # exactly the compaction point: readable
        if r < 0.82 and comp > 1:
            return self.rnd.randint(1, comp - 1)  # compacted
        if r < 0.95:
            return cur + self.rnd.randint(1, 3)  # future
        return -1  # negative: "current" for Range, compacted inside a txn once compacted

    def filter_rev(self) -> int:
        return self.rnd.randint(1, self.current_rev + 1)

    # -- requests ----------------------------------------------------------------------------

    def put_request(self, in_txn: bool = False) -> PutRequest:
        p = PutRequest(key=self.key(0.0 if in_txn else 0.04), value=self.value())
        p.prev_kv = self.chance(0.4)
        if self.chance(0.1):
            p.ignore_value = True
            if self.chance(0.8):
                p.value = b""  # a value with ignore_value is an error
        if self.chance(0.08):
            p.ignore_lease = True
        if self.chance(0.08) and not (p.ignore_lease and self.chance(0.5)):
            p.lease = NO_SUCH_LEASE if self.chance(0.7) else self.rnd.randint(1, 2**62)
        return p

    def range_request(self, in_txn: bool = False) -> RangeRequest:
        key, end = self.key_range()
        if not in_txn and self.chance(0.03):
            key = b""
        r = RangeRequest(key=key, range_end=end)
        if self.chance(0.3):
            r.limit = self.rnd.choice([1, 1, 2, 3, 5, 100])
        if self.chance(0.3):
            r.revision = self.revision()
        if self.chance(0.3):
            r.sort_order = self.rnd.choice(SORT_ORDERS)
            r.sort_target = self.rnd.choice(SORT_TARGETS)
        r.keys_only = self.chance(0.15)
        r.count_only = self.chance(0.15)
        r.serializable = self.chance(0.2)
        for f in ("min_mod_revision", "max_mod_revision", "min_create_revision",
                  "max_create_revision"):
            if self.chance(0.08):
                setattr(r, f, self.filter_rev())
        return r

    def delete_request(self, in_txn: bool = False) -> DeleteRangeRequest:
        key, end = self.key_range()
        if not in_txn and self.chance(0.03):
            key = b""
        return DeleteRangeRequest(key=key, range_end=end, prev_kv=self.chance(0.5))

    def compact_request(self) -> CompactionRequest:
        cur, comp = self.current_rev, self.compact_rev
        r = self.rnd.random()
        if r < 0.45 and comp < cur:
            rev = self.rnd.randint(max(comp, 0) + 1, cur)  # past, not yet compacted
        elif r < 0.65:
            rev = cur
        elif r < 0.8:
            rev = cur + self.rnd.randint(1, 3)  # future
        else:
            rev = self.rnd.randint(1, max(comp, 1))  # already compacted
        return CompactionRequest(revision=rev, physical=self.chance(0.5))

    def compare(self) -> Compare:
        key, end = self.key(0.02), b""
        if self.chance(0.2):
            key, end = self.key_range()
        target = self.rnd.choice(CMP_TARGETS)
        c = Compare(key=key, range_end=end, target=target, result=self.rnd.choice(CMP_RESULTS))
        info = self.known.get(key)
        use_known = info is not None and self.chance(0.6)
        if target == Compare.VERSION:
            c.version = info.version if use_known else self.rnd.randint(0, 4)
        elif target == Compare.CREATE:
            c.create_revision = info.create_revision if use_known else self.filter_rev() - 1
        elif target == Compare.MOD:
            c.mod_revision = info.mod_revision if use_known else self.filter_rev() - 1
        elif target == Compare.VALUE:
            c.value = info.value if use_known else self.rnd.choice(SMALL_VALUES)
        else:
            c.lease = 0 if self.chance(0.7) else NO_SUCH_LEASE
        if self.chance(0.04):  # the value in another field of the oneof: etcd compares with 0
            other = self.rnd.choice([f for t, f in _UNION_FIELD.items() if t != target])
            if other == "value":
                c.value = b"v1"
            else:
                setattr(c, other, self.rnd.randint(0, 3))
        return c

    def txn_request(self, depth: int = 0) -> TxnRequest:
        r = self.rnd.random()
        if depth == 0:
            if r < 0.03:
                self.note = "empty txn"
                return TxnRequest()
            if r < 0.06:
                return self._big_txn()
            if r < 0.12:
                return self._dup_key_txn()
        t = TxnRequest(compare=[self.compare() for _ in range(self.rnd.choice([0, 1, 1, 2, 3]))])
        if self.chance(0.7):  # clean: no key written twice, so it usually applies
            pool = self.keys[:]
            self.rnd.shuffle(pool)
            self._fill_clean(t, pool, depth)
        else:
            for branch in (t.success, t.failure):
                for _ in range(self.rnd.randint(0, 4)):
                    branch.append(self._wild_op(depth))
            if depth == 0:
                self._defuse(t)
        return t

    def _defuse(self, t: TxnRequest) -> None:
        """Keeps etcd alive. Its duplicate-key check takes a "\\0" range end literally, so a
        txn may delete [k, "\\0") and then put k with ignore_value/ignore_lease: the put then
        fails half-way through the apply and etcd 3.4 panics (the process exits). Such a txn
        gets a real range end instead, which the duplicate-key check sees (tests/test_differential.py checks
        kvstore's own answer to it)."""
        ops = list(_walk_ops(t))
        if any(o.WhichOneof("request") == "request_put"
               and (o.request_put.ignore_value or o.request_put.ignore_lease) for o in ops):
            for o in ops:
                if o.WhichOneof("request") == "request_delete_range" \
                        and o.request_delete_range.range_end == b"\x00":
                    o.request_delete_range.range_end = prefix_end(self.namespace)

    def _fill_clean(self, t: TxnRequest, pool: list[bytes], depth: int) -> None:
        for branch in (t.success, t.failure):
            for _ in range(self.rnd.randint(0, 4)):
                r = self.rnd.random()
                if r < 0.35 or not pool:
                    branch.append(RequestOp(request_range=self.range_request(True)))
                elif r < 0.65:
                    p = self.put_request(True)
                    p.key = pool.pop()
                    branch.append(RequestOp(request_put=p))
                elif r < 0.85 or depth >= 2:
                    branch.append(RequestOp(request_delete_range=DeleteRangeRequest(
                        key=pool.pop(), prev_kv=self.chance(0.5))))
                else:
                    n = self.rnd.randint(0, 2)
                    nested = TxnRequest(compare=[self.compare() for _ in range(n)])
                    self._fill_clean(nested, pool, depth + 1)
                    branch.append(RequestOp(request_txn=nested))

    def _wild_op(self, depth: int) -> RequestOp:
        r = self.rnd.random()
        if r < 0.3:
            return RequestOp(request_range=self.range_request(True))
        if r < 0.6:
            return RequestOp(request_put=self.put_request(True))
        if r < 0.85 or depth >= 2:
            return RequestOp(request_delete_range=self.delete_request(True))
        return RequestOp(request_txn=self.txn_request(depth + 1))

    def _big_txn(self) -> TxnRequest:
        """Op counts around --max-txn-ops, at the top level and nested."""
        k = self.key()
        rd = RequestOp(request_range=RangeRequest(key=k))
        dl = RequestOp(request_delete_range=DeleteRangeRequest(key=k))
        kind = self.rnd.randrange(5)
        self.note = ["129 ops", "128 ops", "129 compares", "nested over the op budget",
                     "nested at the op budget"][kind]
        if kind == 0:  # too many
            return TxnRequest(success=[rd] * (MAX_TXN_OPS + 1))
        if kind == 1:  # exactly the limit (deletes may overlap each other)
            return TxnRequest(success=[dl] * MAX_TXN_OPS, failure=[rd])
        if kind == 2:  # too many compares
            c = Compare(key=k, target=Compare.VERSION, result=Compare.GREATER, version=0)
            return TxnRequest(compare=[c] * (MAX_TXN_OPS + 1))
        # nested: the nested txn gets what the outer one left of the budget
        outer = self.rnd.randint(90, 110)
        inner = MAX_TXN_OPS - outer + (1 if kind == 3 else 0)
        nested = TxnRequest(success=[rd] * inner)
        return TxnRequest(success=[rd] * (outer - 1) + [RequestOp(request_txn=nested)])

    def _dup_key_txn(self) -> TxnRequest:
        """etcd's duplicate-key rule, allowed and rejected forms."""
        k, k2 = self.rnd.sample(self.keys, 2)
        p = lambda key: RequestOp(request_put=PutRequest(key=key, value=self.value()))  # noqa: E731
        d = lambda key, end=b"": RequestOp(request_delete_range=DeleteRangeRequest(  # noqa: E731
            key=key, range_end=end))
        nt = lambda s, f: RequestOp(request_txn=TxnRequest(  # noqa: E731
            compare=[self.compare() for _ in range(self.rnd.randint(0, 1))], success=s, failure=f))
        forms = {
            "put + put": [p(k), p(k)],
            "put + delete": [p(k), d(k)],
            "delete range over a put": [d(self.namespace, prefix_end(self.namespace)), p(k)],
            "delete + delete (allowed)": [d(k), d(k)],
            "nested then/else same key (allowed)": [nt([p(k)], [p(k)])],
            "parent + nested then put": [p(k), nt([p(k)], [])],
            "parent + nested else put": [p(k), nt([], [p(k)])],
            "two nested txns put": [nt([p(k)], []), nt([p(k)], [])],
            "nested delete + parent put": [nt([d(k)], []), p(k)],
            "\\0-ended delete + nested put": [nt([p(k)], []), d(k, b"\x00")],
            "empty op": [p(k), p(k2), RequestOp()],
            "distinct keys (allowed)": [p(k), nt([p(k2)], [p(k2)])],
        }
        self.note = self.rnd.choice(sorted(forms))
        ops = forms[self.note]
        branch = "success" if self.chance(0.7) else "failure"
        t = TxnRequest(compare=[self.compare() for _ in range(self.rnd.randint(0, 2))])
        getattr(t, branch).extend(ops)
        return t

    def next_op(self) -> Op:
        self.note = ""
        r = self.rnd.random()
        if r < 0.34:
            request = self.put_request()
        elif r < 0.59:
            request = self.range_request()
        elif r < 0.67:
            request = self.delete_request()
        elif r < 0.94:
            request = self.txn_request()
        else:
            request = self.compact_request()
        return Op.of(request, self.note)


def _walk_ops(t: TxnRequest):
    for o in list(t.success) + list(t.failure):
        yield o
        if o.WhichOneof("request") == "request_txn":
            yield from _walk_ops(o.request_txn)
