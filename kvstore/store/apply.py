"""Applies etcd requests to the MVCC store and builds etcd's responses (etcd's applierV3).

Deterministic: the outcome depends only on the request and the store's state, never on clocks
or randomness, so replaying the log rebuilds exactly the state replies were given from.
Headers carry only the revision here; the Store fills in the member's identity.
"""
from __future__ import annotations

from .. import errors
from ..api import rpc_pb2 as pb
from ..mvcc import KeyValue, MVCCStore
from ..mvcc.core import wire
from ..mvcc.lease import LeaseTable
from .compare import compares_hold
from .ranges import range_end
from .validate import is_txn_readonly

_NONE, _ASCEND, _DESCEND = pb.RangeRequest.NONE, pb.RangeRequest.ASCEND, pb.RangeRequest.DESCEND
_SORT_KEYS = {
    pb.RangeRequest.KEY: lambda kv: kv.key,
    pb.RangeRequest.VERSION: lambda kv: kv.version,
    pb.RangeRequest.CREATE: lambda kv: kv.create_revision,
    pb.RangeRequest.MOD: lambda kv: kv.mod_revision,
    pb.RangeRequest.VALUE: lambda kv: kv.value,
}


def revision_header(revision: int) -> bytes:
    """The header of a response nested in a txn: the revision only, as etcd's."""
    return wire.encode_header(0, 0, revision, 0)


class Applier:
    def __init__(self, mvcc: MVCCStore, leases: LeaseTable):
        self.mvcc = mvcc
        self.leases = leases

    def lease_exists(self, lease_id: int) -> bool:
        return lease_id in self.leases

    # -- single requests -----------------------------------------------------------------------

    def range(self, r: pb.RangeRequest, view=None, header=revision_header) -> bytes:
        """The serialized RangeResponse; ``header(revision)`` gives its ResponseHeader's bytes."""
        if view is None:
            view = self.mvcc
        limit = r.limit
        filtered = (r.min_mod_revision or r.max_mod_revision or r.min_create_revision
                    or r.max_create_revision)
        if r.sort_order != _NONE or filtered:
            limit = 0  # fetch everything; sort and truncate afterwards
        if limit > 0:
            limit += 1  # one extra tells whether there is more
        rr = view.range(r.key, range_end(r.range_end), r.revision, limit, r.count_only)
        kvs = rr.kvs
        if filtered:
            kvs = [kv for kv in kvs if _passes_revision_filters(r, kv)]
        order = r.sort_order
        if r.sort_target != pb.RangeRequest.KEY and order == _NONE:
            order = _ASCEND
        if order != _NONE and r.sort_target in _SORT_KEYS:
            kvs = sorted(kvs, key=_SORT_KEYS[r.sort_target], reverse=(order == _DESCEND))
        more = False
        if r.limit > 0 and len(kvs) > r.limit:
            kvs = kvs[:r.limit]
            more = True
        return wire.range_response(header(rr.rev), kvs, r.keys_only, more, rr.count)

    def put(self, r: pb.PutRequest, txn=None, header=revision_header) -> bytes:
        """The serialized PutResponse (``header`` as in range)."""
        if txn is None:
            if r.lease and not self.lease_exists(r.lease):
                raise errors.LeaseNotFound()
            if not (r.ignore_value or r.ignore_lease or r.prev_kv):  # most puts: no txn object
                return wire.put_response(header(self.mvcc.put_one(r.key, r.value, r.lease)), None)
            return self._in_own_txn(self._put, r, header)
        return self._put(r, txn, header)

    def _put(self, r: pb.PutRequest, txn, header) -> bytes:
        value, lease = r.value, r.lease
        prev = None
        if r.ignore_value or r.ignore_lease or r.prev_kv:
            prev = txn.current(r.key)
        if r.ignore_value or r.ignore_lease:
            if prev is None:
                raise errors.KeyNotFound()
            if r.ignore_value:
                value = prev.value
            if r.ignore_lease:
                lease = prev.lease
        txn.put(r.key, value, lease)
        return wire.put_response(header(txn.rev), prev if r.prev_kv else None)

    def delete_range(self, r: pb.DeleteRangeRequest, txn=None, header=revision_header) -> bytes:
        """The serialized DeleteRangeResponse (``header`` as in range)."""
        if txn is None:
            return self._in_own_txn(self._delete_range, r, header)
        return self._delete_range(r, txn, header)

    def _in_own_txn(self, op, r, header) -> bytes:
        """``op`` in a write txn of its own: committed if it succeeds, undone if it raises (an
        error must leave no partial write behind, on any member)."""
        txn = self.mvcc.write()
        try:
            resp = op(r, txn, header)
        except BaseException:
            txn.abort()
            raise
        txn.end()
        return resp

    def _delete_range(self, r: pb.DeleteRangeRequest, txn, header) -> bytes:
        deleted = txn.delete_range(r.key, range_end(r.range_end))
        rev = txn.rev if (deleted or txn.changes) else txn.store.current_rev
        return wire.delete_range_response(header(rev), len(deleted), deleted if r.prev_kv else [])

    def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        self.mvcc.start_compaction(r.revision)  # the store compacts the keys in slices
        return pb.CompactionResponse(header=pb.ResponseHeader(revision=self.mvcc.current_rev))

    # -- leases --------------------------------------------------------------------------------

    def lease_grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        lease = self.leases.grant(r.ID, r.TTL)
        return pb.LeaseGrantResponse(header=pb.ResponseHeader(revision=self.mvcc.current_rev),
                                     ID=lease.id, TTL=lease.ttl)

    def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        """Deletes every key the lease holds, in one revision, then forgets the lease."""
        lease = self.leases.get(r.ID)
        if lease is None:
            raise errors.LeaseNotFound()
        txn = self.mvcc.write()
        for key in sorted(lease.keys):
            txn.delete_range(key, None)
        txn.end()
        self.leases.remove(r.ID)
        return pb.LeaseRevokeResponse(header=pb.ResponseHeader(revision=self.mvcc.current_rev))

    # -- transactions --------------------------------------------------------------------------

    def txn(self, r: pb.TxnRequest, header=revision_header) -> bytes:
        """The serialized TxnResponse. Compares (every nested level) and checks run on the
        state before the txn; only if all pass are the ops applied, in one revision."""
        mvcc = self.mvcc
        path = _compare_path(mvcc, r)
        writes = not is_txn_readonly(r)
        range_error = self._check_ops(r, path, writes)
        if range_error is not None:  # etcd checks every put before any range
            raise range_error
        if not writes:
            succeeded, ops, _ = self._apply_txn(mvcc, r, path)
            return wire.txn_response(header(mvcc.current_rev), succeeded, ops)
        txn = mvcc.write()
        try:
            succeeded, ops, _ = self._apply_txn(txn, r, path)
        except BaseException:
            # e.g. a put with ignore_value after a "\0"-ended delete of its key in the same txn
            # (the duplicate-key check lets it through; etcd panics there): all or nothing
            txn.abort()
            raise
        txn.end()
        return wire.txn_response(header(mvcc.current_rev), succeeded, ops)

    def _check_ops(self, r: pb.TxnRequest, path: list[bool], writes: bool) -> errors.EtcdError | None:
        """etcd's checkRequests with checkPut, then with checkRange, over the ops of the
        branches ``path`` takes, in one pass: a put's error is raised at once, the first
        range's error returned (to raise if no put fails)."""
        return self._check_level(r, path, writes)[1]

    def _check_level(self, r: pb.TxnRequest, path: list[bool],
                     writes: bool) -> tuple[int, errors.EtcdError | None]:
        """(nested txns consumed from ``path``, the first range error at this level or below)."""
        nested = 0
        range_error: errors.EtcdError | None = None
        rest = path[1:]
        for op in (r.success if path[0] else r.failure):
            which = op.WhichOneof("request")
            if which == "request_put":
                if writes:
                    self._check_put(op.request_put)
            elif which == "request_range":
                if range_error is None:
                    range_error = self._range_error(op.request_range.revision)
            elif which == "request_txn":
                used, inner = self._check_level(op.request_txn, rest, writes)
                range_error = range_error or inner
                nested += used + 1
                rest = rest[used + 1:]
        return nested, range_error

    def _check_put(self, p: pb.PutRequest) -> None:
        if (p.ignore_value or p.ignore_lease) and self.mvcc.get(p.key) is None:
            raise errors.KeyNotFound()
        if p.lease and not self.lease_exists(p.lease):
            raise errors.LeaseNotFound()

    def _range_error(self, rev: int) -> errors.EtcdError | None:
        if rev == 0:
            return None
        if rev > self.mvcc.current_rev:
            return errors.FutureRev()
        if rev < self.mvcc.compact_rev:
            return errors.Compacted()
        return None

    def _apply_txn(self, view, r: pb.TxnRequest, path: list[bool]) -> tuple[bool, list, int]:
        """Runs the chosen branch: (succeeded, its responses as (wire.OP_*, bytes), how many
        nested txns it consumed from ``path``). Nested responses carry the revision only, and a
        nested txn an empty header, as etcd's."""
        succeeded = path[0]
        ops = []
        nested = 0
        rest = path[1:]
        for op in (r.success if succeeded else r.failure):
            which = op.WhichOneof("request")
            if which == "request_range":
                ops.append((wire.OP_RANGE, self.range(op.request_range, view)))
            elif which == "request_put":
                ops.append((wire.OP_PUT, self._put(op.request_put, view, revision_header)))
            elif which == "request_delete_range":
                ops.append((wire.OP_DELETE_RANGE, self._delete_range(
                    op.request_delete_range, view, revision_header)))
            elif which == "request_txn":
                sub_succeeded, sub_ops, used = self._apply_txn(view, op.request_txn, rest)
                ops.append((wire.OP_TXN, wire.txn_response(b"", sub_succeeded, sub_ops)))
                nested += used + 1
                rest = rest[used + 1:]
        return succeeded, ops, nested


def _passes_revision_filters(r: pb.RangeRequest, kv: KeyValue) -> bool:
    if r.max_mod_revision and kv.mod_revision > r.max_mod_revision:
        return False
    if r.min_mod_revision and kv.mod_revision < r.min_mod_revision:
        return False
    if r.max_create_revision and kv.create_revision > r.max_create_revision:
        return False
    if r.min_create_revision and kv.create_revision < r.min_create_revision:
        return False
    return True


def _compare_path(view, r: pb.TxnRequest) -> list[bool]:
    """The branch taken at this txn and at every nested txn on the way (etcd's compareToPath)."""
    taken = compares_hold(view, r.compare)
    path = [taken]
    for op in (r.success if taken else r.failure):
        if op.WhichOneof("request") == "request_txn":
            path.extend(_compare_path(view, op.request_txn))
    return path
