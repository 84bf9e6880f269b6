"""Differential tests: kvstore must answer every KV request exactly as a real etcd does.

Hand-written scenarios (one per area, on fresh servers so revisions are the real ones) and a
generated run of many seeded random sequences on one shared pair of servers. See
tests/differential/harness.py for what is compared and how revisions are aligned.
"""
from __future__ import annotations

import os

import grpc
import pytest

from differential.generate import SequenceGenerator, cmp, delete, prefix_end, put, rng, txn
from differential.harness import DiffPair, Endpoint, Outcome, comparable, start_both
from kvstore.api import kv_pb2, rpc_pb2 as pb
from procs import EtcdProcess, KvstoreProcess

# a deeper run: KVSTORE_DIFF_SEEDS=500 KVSTORE_DIFF_LENGTH=80 [KVSTORE_DIFF_FIRST_SEED=1000]
#   [KVSTORE_DIFF_BACKEND=memory] python -m pytest tests/test_differential.py
SEEDS = int(os.environ.get("KVSTORE_DIFF_SEEDS", 40))
FIRST_SEED = int(os.environ.get("KVSTORE_DIFF_FIRST_SEED", 0))
SEQUENCE_LENGTH = int(os.environ.get("KVSTORE_DIFF_LENGTH", 60))
BACKEND = os.environ.get("KVSTORE_DIFF_BACKEND", "lmdb")  # kvstore's log: lmdb or memory
MAX_REQUEST_BYTES = 1536 * 1024  # both servers' default --max-request-bytes

OK = None
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def _require_etcd():
    if not EtcdProcess.available():
        pytest.fail("the etcd binary (Debian's etcd-server, /usr/bin/etcd) is not installed: "
                    "the differential tests need it as the reference", pytrace=False)


def _pair(base_dir):
    _require_etcd()
    etcd = EtcdProcess(base_dir / "etcd")
    kv = KvstoreProcess(base_dir / "kvstore", backend=BACKEND)
    start_both(etcd, kv)
    pair = DiffPair(etcd.endpoint, kv.endpoint, report_dir=base_dir)
    return pair, etcd, kv


@pytest.fixture
def fresh(tmp_path):
    """A fresh etcd and a fresh kvstore: scenarios see real revisions, starting at 1."""
    pair, etcd, kv = _pair(tmp_path)
    try:
        yield pair.sequence("scenario")
    finally:
        pair.close()
        etcd.stop()
        kv.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One pair for all generated sequences (each in its own namespace, after a barrier)."""
    pair, etcd, kv = _pair(tmp_path_factory.mktemp("differential"))
    try:
        yield pair
    finally:
        pair.close()
        etcd.stop()
        kv.stop()


def code(outcome):
    return outcome.code


# -- the harness's own rules ----------------------------------------------------------------------

def test_comparison_rules():
    """What the harness ignores (identity, tie order) and what it must not (order of values)."""
    def kv(key, version, value=b"v"):
        return kv_pb2.KeyValue(key=key, version=version, create_revision=3, mod_revision=4,
                               value=value)

    def resp(*kvs, more=False, member=0):
        return pb.RangeResponse(header=pb.ResponseHeader(revision=5, member_id=member,
                                                         cluster_id=member, raft_term=member),
                                kvs=list(kvs), count=len(kvs) + more, more=more)

    def same(request, a, b, delta_a=0, delta_b=0):
        return (comparable("Range", request, Outcome(a), delta_a).text()
                == comparable("Range", request, Outcome(b), delta_b).text())

    by_version = rng(b"a", b"z", sort_order="DESCEND", sort_target="VERSION")
    a, b, c = kv(b"a", 2), kv(b"b", 2), kv(b"c", 1)
    assert same(by_version, resp(a, b, c, member=1), resp(b, a, c, member=2))  # ties, identity
    assert not same(by_version, resp(a, b, c), resp(c, a, b))                  # value order
    assert not same(by_version, resp(a, b, c), resp(a, kv(b"b", 2, b"x"), c))  # contents
    assert not same(rng(b"a", b"z"), resp(a, b, c), resp(b, a, c))            # by key: exact
    limited = rng(b"a", b"z", sort_order="DESCEND", sort_target="VERSION", limit=2)
    assert same(limited, resp(kv(b"x", 3), a, more=True), resp(kv(b"x", 3), b, more=True))
    assert not same(limited, resp(kv(b"x", 3), a, more=True), resp(kv(b"y", 3), a, more=True))
    shifted = resp(kv(b"a", 2))
    shifted.header.revision = 15
    shifted.kvs[0].create_revision, shifted.kvs[0].mod_revision = 13, 14
    assert same(rng(b"a"), resp(kv(b"a", 2)), shifted, 0, 10)                 # relative revisions
    err = Outcome(code=grpc.StatusCode.OUT_OF_RANGE, details="etcdserver: x")
    assert comparable("Range", rng(b"a"), err, 3).text() != Outcome(
        code=grpc.StatusCode.OUT_OF_RANGE, details="etcdserver: y").text()


# -- scenarios ----------------------------------------------------------------------------------

def test_put(fresh):
    s, k = fresh, fresh.key
    assert code(s.put(k("a"), "1")) is OK
    s.put(k("a"), "2", prev_kv=True)
    s.put(k("b"), "", prev_kv=True)                       # new key, empty value: no prev_kv
    s.put(k("a"), ignore_value=True, prev_kv=True)         # keeps "2", bumps version
    s.put(k("a"), "3", ignore_lease=True)
    assert code(s.put(k("zz"), ignore_value=True)) == INVALID_ARGUMENT   # key not found
    assert code(s.put(k("zz"), ignore_lease=True)) == INVALID_ARGUMENT
    assert code(s.put(k("a"), "x", ignore_value=True)) == INVALID_ARGUMENT  # value is provided
    assert code(s.put(k("a"), ignore_lease=True, lease=7)) == INVALID_ARGUMENT  # lease is provided
    assert code(s.put(k("a"), "x", lease=0x1234)) == NOT_FOUND           # lease not found
    assert code(s.put(k("zz"), lease=5, ignore_value=True)) == NOT_FOUND  # lease checked first
    assert code(s.put(b"", "x")) == INVALID_ARGUMENT                      # key is not provided
    assert code(s.put(b"", ignore_value=True, value=b"x")) == INVALID_ARGUMENT
    s.put(k("big"), b"L" * 100_000, prev_kv=True)
    s.put(k("big"), b"\x00\xff" * 10, prev_kv=True)
    s.range(k(""), b"\x00")


def test_range(fresh):
    s, k = fresh, fresh.key
    for key, value in [("a", "3"), ("ab", "1"), ("abc", "2"), ("b", "1"), ("c", "")]:
        s.put(k(key), value)
    s.put(k("ab"), "0")
    s.delete(k("b"))
    s.range(k("a"))
    s.range(k("nope"))
    s.range(k("a"), k("b"))
    s.range(k("a"), k("ac"))                                  # the "a" prefix
    s.range(k(""), b"\x00")
    s.range(k("b"), k("a"))                                   # key > range_end: nothing
    s.range(k("a"), k("a"))
    for limit in (1, 2, 3, 4, 10):
        s.range(k(""), b"\x00", limit=limit)
        s.range(k(""), b"\x00", limit=limit, count_only=True)  # count is total, more is false
        s.range(k(""), b"\x00", limit=limit, keys_only=True)
    s.range(k(""), b"\x00", count_only=True, keys_only=True)
    s.range(k(""), b"\x00", serializable=True)
    for rev in (-1, 0, 1, 2, 4, 7, 8, 9, 100):                # 8 is current, 9 the future
        s.range(k(""), b"\x00", revision=rev)
        s.range(k("ab"), revision=rev)
    for order in ("NONE", "ASCEND", "DESCEND"):
        for target in ("KEY", "VERSION", "CREATE", "MOD", "VALUE"):
            for limit in (0, 1, 2):
                s.range(k(""), b"\x00", limit=limit, sort_order=order, sort_target=target)
    s.range(k(""), b"\x00", min_mod_revision=4)
    s.range(k(""), b"\x00", max_mod_revision=4, limit=1)
    s.range(k(""), b"\x00", min_create_revision=3, max_create_revision=4, count_only=True)
    s.range(k(""), b"\x00", max_create_revision=3, revision=5, sort_order="DESCEND")
    s.compact(4)
    s.range(k(""), b"\x00", revision=3)                       # compacted
    s.range(k(""), b"\x00", revision=4)                       # the compaction point
    s.range(k(""), b"\x00", revision=-5)
    s.range(k(""), b"\x00", limit=-1)
    s.put(k(b"\xff"), "ff")
    s.put(k(b"\xff\xff"), "ffff")
    s.range(k(b"\xff"), prefix_end(k(b"\xff")))
    s.range(b"\xff", prefix_end(b"\xff"))                      # prefix end of all-0xff: "\0"
    s.range(b"\x00", b"\x00", keys_only=True)                  # the whole keyspace
    assert code(s.range(b"")) == INVALID_ARGUMENT
    assert code(s.range(b"", b"\x00")) == INVALID_ARGUMENT


def test_delete_range(fresh):
    s, k = fresh, fresh.key
    for key in ("a", "ab", "abc", "b", "ba", "c"):
        s.put(k(key), key)
    s.delete(k("nope"))                                       # nothing: header is current rev
    s.delete(k("nope"), prev_kv=True)
    s.delete(k("c"), k("a"))                                  # key > range_end
    s.delete(k("a"), prev_kv=True)
    s.delete(k("a"), k("b"), prev_kv=True)                    # "ab", "abc"
    s.delete(k("b"), k("c"))
    s.put(k("a"), "again")
    s.delete(k(""), b"\x00", prev_kv=True)
    s.delete(k(""), b"\x00", prev_kv=True)
    assert code(s.delete(b"")) == INVALID_ARGUMENT
    s.range(k("a"), revision=7)                               # before its deletion
    s.range(k(""), b"\x00", revision=9)


def test_txn_compares(fresh):
    s, k = fresh, fresh.key
    s.put(k("a"), "v1")
    s.put(k("a"), "v2")
    s.put(k("b"), "v1")
    then = [rng(k("a"))]
    else_ = [rng(k("b"))]
    for key in ("a", "missing"):
        for result in ("EQUAL", "GREATER", "LESS", "NOT_EQUAL"):
            for target, value in [("VERSION", 2), ("VERSION", 0), ("CREATE", 2), ("CREATE", 0),
                                  ("MOD", 3), ("MOD", 0), ("VALUE", b"v2"), ("VALUE", b""),
                                  ("LEASE", 0), ("LEASE", 5)]:
                s.txn(txn([cmp(k(key), target, result, value)], then, else_))
    for end in (k("c"), b"\x00", k("a")):                     # compares over ranges
        for target, value in [("VERSION", 1), ("MOD", 3), ("VALUE", b"v1"), ("CREATE", 3)]:
            for result in ("EQUAL", "GREATER", "LESS", "NOT_EQUAL"):
                s.txn(txn([cmp(k("a"), target, result, value, range_end=end)], then, else_))
    s.txn(txn([cmp(k("a"), "VERSION", "EQUAL", 3, union="mod_revision")], then, else_))
    s.txn(txn([cmp(k("a"), "MOD", "EQUAL", 0, union="version")], then, else_))
    s.txn(txn([cmp(k("a"), "VERSION", "EQUAL", 2), cmp(k("b"), "VALUE", "EQUAL", b"v0")],
              then, else_))
    assert code(s.txn(txn([cmp(b"", "VERSION", "EQUAL", 0)]))) == INVALID_ARGUMENT


def test_txn_ops(fresh):
    s, k = fresh, fresh.key
    s.txn(txn())                                              # empty txn
    s.txn(txn([], [put(k("a"), b"1"), rng(k("a")), put(k("b"), b"2", prev_kv=True),
                   rng(k(""), b"\x00")]))                     # 2: reads see the txn's own writes
    s.txn(txn([], [rng(k("a")), delete(k("nope")), rng(k("a"))]))  # nothing written
    s.txn(txn([], [delete(k("nope")), put(k("c"), b"3")]))    # 3
    s.txn(txn([], [put(k("c"), b"4"), delete(k("nope"))]))    # 4
    s.txn(txn([], [delete(k("a"), prev_kv=True), rng(k(""), b"\x00", count_only=True)]))  # 5
    assert s.txn(txn([cmp(k("b"), "VALUE", "EQUAL", b"2")],   # 6: nested, both levels succeed
                     [txn([cmp(k("c"), "VERSION", "EQUAL", 2)],
                          [put(k("d"), b"nested"), rng(k("d"))], [delete(k("c"))]),
                      rng(k(""), b"\x00", revision=5)],
                     [put(k("x"), b"no")])).response.succeeded
    s.txn(txn([cmp(k("d"), "VERSION", "EQUAL", 5)],            # 7: nested in the failure branch
              [put(k("x"), b"no")],
              [txn([cmp(k("c"), "VERSION", "EQUAL", 1)], [delete(k("c"))],
                   [put(k("c"), b"5", prev_kv=True), txn([], [rng(k("c"))])]),
               delete(k("d"), prev_kv=True)]))
    s.txn(txn([], [txn([], [txn([], [rng(k(""), b"\x00")])])]))  # nested read-only
    s.txn(txn([], [rng(k(""), b"\x00", revision=100)]))      # future, in a read-only txn
    s.txn(txn([], [put(k("e"), b""), rng(k(""), b"\x00", revision=7)]))  # 8, reads at 7
    s.txn(txn([], [put(k("e"), b""), rng(k(""), b"\x00", revision=9)]))  # its own revision: future
    s.txn(txn([cmp(k("e"), "VERSION", "EQUAL", 0)],           # only the branch taken is checked
              [rng(k("a"), revision=100)], [put(k("e"), b"ok")]))  # 9
    s.compact(5)
    s.txn(txn([], [rng(k("a"), revision=3)]))                 # compacted
    s.txn(txn([], [put(k("a"), b"x"), rng(k("a"), revision=-1)]))  # negative < compacted: error
    s.txn(txn([], [put(k("a"), b"x"), rng(k("a"), revision=0)]))   # 10
    assert code(s.txn(txn([], [put(k("zz"), ignore_value=True)]))) == INVALID_ARGUMENT
    assert code(s.txn(txn([], [put(k("a"), b"x", lease=9)]))) == NOT_FOUND
    s.txn(txn([], [put(k("zz"), ignore_value=True, lease=9)]))  # in a txn: key before lease
    s.txn(txn([], [rng(k("a"), revision=100), put(k("a"), b"x", lease=9)]))  # puts before ranges
    s.txn(txn([], [rng(k("a"), revision=100), txn([], [put(k("b"), b"x", lease=9)])]))  # nested too
    s.txn(txn([], [txn([], [rng(k("a"), revision=100)]), put(k("b"), b"x", lease=9)]))
    s.txn(txn([], [put(k("a"), ignore_lease=True, prev_kv=True), put(k("b"), ignore_value=True)]))
    s.range(k(""), b"\x00")


def test_txn_request_errors(fresh):
    s, k = fresh, fresh.key
    s.put(k("a"), b"1")
    a, b = k("a"), k("b")
    cases = [
        ([put(a), put(a)], INVALID_ARGUMENT),                 # put + put
        ([put(a), delete(a)], INVALID_ARGUMENT),              # put + delete
        ([delete(a), put(a)], INVALID_ARGUMENT),
        ([delete(k(""), b"\x00"), put(a)], OK),               # "\0" end taken literally here
        ([delete(k(""), k("z")), put(a)], INVALID_ARGUMENT),
        ([delete(a), delete(a)], OK),
        ([txn([], [put(a)], [put(a)])], OK),                  # then/else: only one runs
        ([put(a), txn([], [put(a)])], INVALID_ARGUMENT),
        ([txn([], [], [put(a)]), put(a)], INVALID_ARGUMENT),
        ([txn([], [put(a)]), txn([], [put(a)])], INVALID_ARGUMENT),
        ([txn([], [delete(a)]), put(a)], INVALID_ARGUMENT),
        ([txn([], [put(a)], [put(b)]), txn([], [put(b)])], INVALID_ARGUMENT),
        ([put(a), None], INVALID_ARGUMENT),                   # empty op
        ([txn([], [None])], INVALID_ARGUMENT),
        ([rng(b"")], INVALID_ARGUMENT),
        ([put(b"")], INVALID_ARGUMENT),
        ([delete(b"")], INVALID_ARGUMENT),
        ([put(a, b"x", ignore_value=True)], INVALID_ARGUMENT),
    ]
    for ops, want in cases:
        assert code(s.txn(txn([], ops))) == want, ops
        s.txn(txn([cmp(a, "VERSION", "EQUAL", 99)], [], ops))   # checked in the other branch too
    r = rng(a)
    assert code(s.txn(txn([], [r] * 128))) is OK
    assert code(s.txn(txn([], [r] * 129))) == INVALID_ARGUMENT
    assert code(s.txn(txn([], [], [r] * 129))) == INVALID_ARGUMENT
    c = cmp(a, "VERSION", "GREATER", 0)
    assert code(s.txn(txn([c] * 129))) == INVALID_ARGUMENT
    assert code(s.txn(txn([c] * 128, [r] * 128, [r] * 128))) is OK
    assert code(s.txn(txn([], [r] * 99 + [txn([], [r] * 28)]))) is OK   # nested: 128 - 100 left
    assert code(s.txn(txn([], [r] * 99 + [txn([], [r] * 29)]))) == INVALID_ARGUMENT
    # the order of checks: too many ops first, then empty keys, then duplicates
    s.txn(txn([cmp(b"", "VERSION", "EQUAL", 0)], [r] * 129))
    s.txn(txn([cmp(b"", "VERSION", "EQUAL", 0)], [put(a), put(a)]))
    s.txn(txn([], [put(a), put(a), rng(b"")]))


def test_compact(fresh):
    s, k = fresh, fresh.key
    assert code(s.compact(0)) is OK                          # fresh store: compacted is -1
    s.compact(1)
    assert code(s.compact(1)) == OUT_OF_RANGE                # already compacted
    for i in range(6):
        s.put(k("a"), str(i))                                # revisions 2..7
    s.delete(k("a"))                                         # 8
    s.put(k("a"), "new")                                     # 9
    assert code(s.compact(10, physical=True)) == OUT_OF_RANGE  # the future
    assert code(s.compact(3)) is OK                          # response revision: the current one
    s.range(k("a"), revision=2)                              # compacted
    s.range(k("a"), revision=3)
    s.compact(3)
    s.compact(2, physical=True)
    s.compact(-1)
    s.compact(5, physical=True)
    s.range(k("a"), revision=7)                              # the last put before the delete
    s.range(k("a"), revision=8)                              # deleted at 8
    s.compact(8)                                             # at the tombstone
    s.range(k("a"), revision=8)
    s.range(k("a"), revision=7)
    s.range(k(""), b"\x00", revision=8, count_only=True)
    s.txn(txn([cmp(k("a"), "CREATE", "EQUAL", 9)], [rng(k("a"), revision=8)]))
    s.compact(9)                                             # the current revision
    s.range(k("a"), k("b"), revision=9)
    s.txn(txn([cmp(k("a"), "CREATE", "EQUAL", 9)], [rng(k("a"), revision=8)]))
    s.compact(10)


# -- generated sequences ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + SEEDS))
def test_generated(shared, seed):
    seq = shared.sequence(f"seed {seed}", barrier=True)  # the same start whatever ran before
    gen = SequenceGenerator(seed, seq.namespace, seq.start_rev, seq.start_compact_rev)
    for _ in range(SEQUENCE_LENGTH):
        o = gen.next_op()
        out = seq.step(o)
        gen.observe(o, out.response, not out.ok)


# -- request size limits --------------------------------------------------------------------------

def test_request_size_limits(shared):
    s = shared.sequence("request sizes")
    k = s.key
    assert code(s.put(k("a"), b"x" * (MAX_REQUEST_BYTES - 1000))) is OK
    assert code(s.put(k("a"), b"x" * (MAX_REQUEST_BYTES + 1000))) == INVALID_ARGUMENT
    big_txn = txn([], [put(k(f"t{i}"), b"x" * 20_000) for i in range(80)])
    assert code(s.txn(big_txn)) == INVALID_ARGUMENT
    # etcd measures its raft request: the PutRequest plus 16 or 17 bytes of framing (the exact
    # limit depends on the member id's varint size), so this PutRequest of 5 bytes under the
    # limit is too large
    value = b"x" * (MAX_REQUEST_BYTES - 1 - len(put(k("a")).SerializeToString()) - 8)
    assert code(s.put(k("a"), value)) == INVALID_ARGUMENT
    assert code(s.put(k("a"), value[:-20])) is OK
    s.range(k(""), b"\x00", count_only=True)


def test_grpc_message_too_large(shared):
    s = shared.sequence("grpc message size")
    s.put(s.key("a"), b"x" * (MAX_REQUEST_BYTES + 600 * 1024))


# -- kvstore only: where etcd 3.4 gives no answer to compare with ---------------------------------

def test_invalid_sort_option_is_rejected_as_etcd_3_5_does(kvstore_server):
    """etcd 3.4 ignores an unknown sort_order and *panics* on an unknown sort_target (the
    process exits); etcd >= 3.5 rejects both before anything else, and so does kvstore."""
    ep = Endpoint("kvstore", kvstore_server.endpoint)
    try:
        for order, target in [(3, 0), (-1, 1), (1, 5), (0, 99)]:
            r = rng(b"a", b"\x00", sort_order=order, sort_target=target)
            for method, request in [("Range", r), ("Txn", txn([], [], [r]))]:
                out = ep.call(method, request)
                assert (out.code, out.details) == (INVALID_ARGUMENT,
                                                   "etcdserver: invalid sort option")
    finally:
        ep.close()


def test_txn_failing_half_way_changes_nothing(tmp_path):
    """The duplicate-key check takes a "\\0" range end literally, so a txn may delete [k, "\\0")
    and then put k with ignore_value: the put finds no key half-way through the apply. etcd 3.4
    panics (the process exits); kvstore answers "key not found" and changes nothing, also when
    the log entry is replayed at restart."""
    def check(ep):
        r = ep.call("Range", rng(b"\x00", b"\x00"))
        assert r.ok and r.response.header.revision == 2, r.text()
        assert [(kv.key, kv.value) for kv in r.response.kvs] == [(b"k", b"v")]

    for attempt in ("live", "replayed"):
        with KvstoreProcess(tmp_path / "kv") as kv:
            ep = Endpoint("kvstore", kv.endpoint)
            try:
                if attempt == "live":
                    assert ep.call("Put", put(b"k", b"v")).ok
                    for ops in ([delete(b"k", b"\x00"), put(b"k", ignore_value=True)],
                                [put(b"j", b"1"), delete(b"a", b"\x00"),
                                 txn([], [put(b"k", ignore_lease=True)])]):
                        out = ep.call("Txn", txn([], ops))
                        assert (out.code, out.details) == (INVALID_ARGUMENT,
                                                           "etcdserver: key not found")
                check(ep)
            finally:
                ep.close()
