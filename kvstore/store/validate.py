"""Request checks done before a request reaches the log, as etcd's v3rpc layer does them.

Errors here never consume a revision and are never logged.
"""
from __future__ import annotations

from .. import errors
from ..api import rpc_pb2 as pb

_SORT_ORDERS = frozenset(pb.RangeRequest.SortOrder.values())
_SORT_TARGETS = frozenset(pb.RangeRequest.SortTarget.values())


def check_range(r: pb.RangeRequest) -> None:
    if not r.key:
        raise errors.EmptyKey()
    # etcd >= 3.5 (3.4 ignores an unknown order and panics on an unknown target)
    if r.sort_order not in _SORT_ORDERS or r.sort_target not in _SORT_TARGETS:
        raise errors.InvalidSortOption()


def check_range_stream(r: pb.RangeRequest) -> None:
    """Range's checks, then what RangeStream does not do: any order but the key order (NONE,
    or ASCEND by KEY), and revision filters (the stream's count could not honour them)."""
    check_range(r)
    default_order = (r.sort_order == pb.RangeRequest.NONE
                     or (r.sort_order == pb.RangeRequest.ASCEND and r.sort_target == pb.RangeRequest.KEY))
    if not default_order:
        raise errors.StreamSortUnsupported()
    if r.min_mod_revision or r.max_mod_revision or r.min_create_revision or r.max_create_revision:
        raise errors.StreamFilterUnsupported()


def check_put(r: pb.PutRequest) -> None:
    if not r.key:
        raise errors.EmptyKey()
    if r.ignore_value and r.value:
        raise errors.ValueProvided()
    if r.ignore_lease and r.lease:
        raise errors.LeaseProvided()


def check_delete(r: pb.DeleteRangeRequest) -> None:
    if not r.key:
        raise errors.EmptyKey()


def check_txn(r: pb.TxnRequest, max_txn_ops: int) -> None:
    """Op counts, empty keys, then overlapping writes (etcd's checkTxnRequest + checkIntervals)."""
    _check_txn_ops(r, max_txn_ops)
    for ops in (r.success, r.failure):
        # One op writes a key at most once, unless it is a txn (whose branches are checked).
        if len(ops) > 1 or (ops and ops[0].WhichOneof("request") == "request_txn"):
            check_intervals(ops)


def _check_txn_ops(r: pb.TxnRequest, max_txn_ops: int) -> None:
    opc = max(len(r.compare), len(r.success), len(r.failure))
    if opc > max_txn_ops:
        raise errors.TooManyOps()
    for c in r.compare:
        if not c.key:
            raise errors.EmptyKey()
    for ops in (r.success, r.failure):
        for op in ops:
            _check_request_op(op, max_txn_ops - opc)


def _check_request_op(op: pb.RequestOp, max_txn_ops: int) -> None:
    which = op.WhichOneof("request")
    if which == "request_range":
        check_range(op.request_range)
    elif which == "request_put":
        check_put(op.request_put)
    elif which == "request_delete_range":
        check_delete(op.request_delete_range)
    elif which == "request_txn":
        _check_txn_ops(op.request_txn, max_txn_ops)
    else:  # an empty op
        raise errors.KeyNotFound()


class _Deletes:
    """The delete ranges of one txn level: points and [start, end) intervals."""

    __slots__ = ("ranges",)

    def __init__(self):
        self.ranges: list[tuple[bytes, bytes | None]] = []

    def add(self, key: bytes, end: bytes | None) -> None:
        self.ranges.append((key, end))

    def extend(self, other: _Deletes) -> None:
        self.ranges.extend(other.ranges)

    def contains(self, k: bytes) -> bool:
        for start, end in self.ranges:
            if end is None:
                if k == start:
                    return True
            elif start <= k < end:  # like etcd, a "\0" end is taken literally here
                return True
        return False


def check_intervals(ops) -> tuple[set, _Deletes]:
    """Rejects a txn branch in which a key is written twice (etcd's duplicate-key rule).

    Puts of the same key in the then and else branches of one nested txn are allowed (only
    one runs); deletes may overlap deletes.
    """
    dels = _Deletes()
    for op in ops:
        if op.WhichOneof("request") == "request_delete_range":
            d = op.request_delete_range
            dels.add(d.key, d.range_end if d.range_end else None)
    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        t = op.request_txn
        puts_then, dels_then = check_intervals(t.success)
        puts_else, dels_else = check_intervals(t.failure)
        for k in puts_then:
            if k in puts or dels.contains(k):
                raise errors.DuplicateKey()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or dels.contains(k):
                raise errors.DuplicateKey()
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or dels.contains(k):
            raise errors.DuplicateKey()
        puts.add(k)
    return puts, dels


def is_txn_readonly(r: pb.TxnRequest) -> bool:
    for ops in (r.success, r.failure):
        for op in ops:
            which = op.WhichOneof("request")
            if which in ("request_put", "request_delete_range"):
                return False
            if which == "request_txn" and not is_txn_readonly(op.request_txn):
                return False
    return True


def is_txn_serializable(r: pb.TxnRequest) -> bool:
    """etcd's isTxnSerializable: every op of both branches a serializable range (then a
    read-only txn skips the read index)."""
    for ops in (r.success, r.failure):
        for op in ops:
            if op.WhichOneof("request") != "request_range" or not op.request_range.serializable:
                return False
    return True
