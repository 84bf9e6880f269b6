"""The backend quota (--quota-backend-bytes), as etcd's quota.go counts it.

A write is refused with NOSPACE when the state's size plus the write's cost reaches the quota;
the member then raises the NOSPACE alarm (through the log), and from then on every member's
apply step refuses what would grow the state until the alarm is disarmed. The state's size is
what etcd's key and lease buckets would hold: each revision's record and revision key
(MVCCStore.size) and each lease's record.
"""
from __future__ import annotations

from ..api import rpc_pb2 as pb

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024  # etcd's default (--quota-backend-bytes 0)
MAX_QUOTA_BYTES = 8 * 1024 * 1024 * 1024  # etcd warns above this
KV_OVERHEAD = 256  # etcd's estimate of a key's metadata
LEASE_OVERHEAD = 64  # etcd's estimate of a lease
LEASE_RECORD_BYTES = 8 + 12  # a lease's key and its leasepb.Lease{ID, TTL}


def quota_bytes(flag: int) -> int:
    """The quota a --quota-backend-bytes value means: 0 is etcd's default, negative none."""
    if flag < 0:
        return 0
    return flag or DEFAULT_QUOTA_BYTES


def put_cost(r: pb.PutRequest) -> int:
    return KV_OVERHEAD + len(r.key) + len(r.value)


def txn_cost(r: pb.TxnRequest) -> int:
    """The larger of the two branches' puts (only their own puts, not a nested Txn's, as etcd
    counts)."""
    def branch(ops) -> int:
        return sum(put_cost(op.request_put) for op in ops if op.WhichOneof("request") == "request_put")
    return max(branch(r.success), branch(r.failure))
