"""Log entries: one kind byte, then the request as etcd's protobuf message.

Like etcd's raft log carrying InternalRaftRequest, an entry is the request itself; apply decodes
it and runs it against the state, so replay repeats exactly what the live path did.
"""
from __future__ import annotations

from ..api import rpc_pb2 as pb

PUT = 0x50  # "P"
DELETE_RANGE = 0x44  # "D"
TXN = 0x54  # "T"
COMPACT = 0x43  # "C"
LEASE_GRANT = 0x47  # "G"
LEASE_REVOKE = 0x52  # "R"

MESSAGES = {
    PUT: pb.PutRequest,
    DELETE_RANGE: pb.DeleteRangeRequest,
    TXN: pb.TxnRequest,
    COMPACT: pb.CompactionRequest,
    LEASE_GRANT: pb.LeaseGrantRequest,
    LEASE_REVOKE: pb.LeaseRevokeRequest,
}


def encode(kind: int, request) -> bytes:
    return bytes((kind,)) + request.SerializeToString()


def decode(entry: bytes) -> tuple[int, object]:
    kind = entry[0]
    return kind, MESSAGES[kind].FromString(entry[1:])
