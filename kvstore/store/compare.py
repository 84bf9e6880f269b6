"""Txn compares, evaluated as etcd's applyCompares/compareKV do."""
from __future__ import annotations

from ..api import rpc_pb2 as pb
from ..mvcc import KeyValue
from .ranges import range_end

_EMPTY = KeyValue(b"", 0, 0, 0, b"", 0)

_VERSION, _CREATE, _MOD, _VALUE, _LEASE = (pb.Compare.VERSION, pb.Compare.CREATE, pb.Compare.MOD,
                                           pb.Compare.VALUE, pb.Compare.LEASE)
_EQUAL, _GREATER, _LESS, _NOT_EQUAL = (pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS,
                                       pb.Compare.NOT_EQUAL)


def _cmp(a, b) -> int:
    return (a > b) - (a < b)


def compare_kv(c: pb.Compare, kv: KeyValue) -> bool:
    target = c.target
    if target == _VALUE:
        result = _cmp(kv.value, c.value)
    elif target == _CREATE:
        result = _cmp(kv.create_revision, c.create_revision)
    elif target == _MOD:
        result = _cmp(kv.mod_revision, c.mod_revision)
    elif target == _VERSION:
        result = _cmp(kv.version, c.version)
    elif target == _LEASE:
        result = _cmp(kv.lease, c.lease)
    else:
        result = 0
    r = c.result
    if r == _EQUAL:
        return result == 0
    if r == _NOT_EQUAL:
        return result != 0
    if r == _GREATER:
        return result > 0
    if r == _LESS:
        return result < 0
    return True


def compare_holds(view, c: pb.Compare) -> bool:
    """One compare over its key or range; a missing key compares as an empty KeyValue."""
    if not c.range_end:  # one key, as kube-apiserver's compares are: no range result to build
        kv = view.get(c.key)
        if kv is None:
            return c.target != _VALUE and compare_kv(c, _EMPTY)
        return compare_kv(c, kv)
    kvs = view.range(c.key, range_end(c.range_end)).kvs
    if not kvs:
        if c.target == _VALUE:
            return False
        return compare_kv(c, _EMPTY)
    for kv in kvs:
        if not compare_kv(c, kv):
            return False
    return True


def compares_hold(view, compares) -> bool:
    for c in compares:
        if not compare_holds(view, c):
            return False
    return True
