"""kube-apiserver's Txns, encoded by hand: a request is a concatenation of encoded fields (each
built once where it does not change), so it costs a few byte joins instead of building
messages. check_encoders() holds them against what protobuf itself sends (tests run it)."""
from __future__ import annotations

from kvstore.api import rpc_pb2 as pb
from kvstore.mvcc.wire import varint

# gRPC method paths
TXN = b"/etcdserverpb.KV/Txn"
PUT = b"/etcdserverpb.KV/Put"
RANGE = b"/etcdserverpb.KV/Range"
LEASE_GRANT = b"/etcdserverpb.Lease/LeaseGrant"
WATCH = b"/etcdserverpb.Watch/Watch"

_ONE_BYTE = [bytes((i,)) for i in range(128)]


def ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (tag = field number << 3 | 2, all fields here < 16)."""
    return _ONE_BYTE[tag] + varint(len(payload)) + payload


# Compare: result 1 (EQUAL = 0, left out), target 2, key 3, create_revision 5, mod_revision 6.
# The revisions are in a oneof, so a 0 is sent explicitly, as protobuf does.
_TARGET_CREATE = b"\x10\x01"
_TARGET_MOD = b"\x10\x02"
_CREATE_REV_ZERO = b"\x28\x00"
_MOD_REV = b"\x30"


def create_compare(key: bytes) -> bytes:
    return ld(0x0A, _TARGET_CREATE + ld(0x1A, key) + _CREATE_REV_ZERO)  # TxnRequest.compare


def mod_compare_head(key: bytes) -> bytes:
    """A Compare's bytes up to the mod_revision's value."""
    return _TARGET_MOD + ld(0x1A, key) + _MOD_REV


def mod_compare(head: bytes, rev: int) -> bytes:
    return ld(0x0A, head + varint(rev))


def put_op(key: bytes, value_field: bytes, lease: int = 0) -> bytes:
    """TxnRequest.success with one RequestOp.request_put (value_field: ld(0x12, value))."""
    put = ld(0x0A, key) + value_field + (b"\x18" + varint(lease) if lease else b"")
    return ld(0x12, ld(0x12, put))


def range_failure(key: bytes) -> bytes:
    return ld(0x1A, ld(0x0A, ld(0x0A, key)))  # TxnRequest.failure: RequestOp.request_range


def delete_op(key: bytes) -> bytes:
    return ld(0x12, ld(0x1A, ld(0x0A, key)))  # TxnRequest.success: RequestOp.request_delete_range


def check_encoders() -> None:
    """The hand-made encodings parse to the messages protobuf itself would send."""
    key, value, rev, lease = b"/registry/pods/default/pod-7", b"v" * 300, 123456, 0x7FFF0000AA
    op_put = pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))
    cases = [
        (mod_compare(mod_compare_head(key), rev) + put_op(key, ld(0x12, value)) + range_failure(key),
         pb.TxnRequest(compare=[pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                                           mod_revision=rev)],
                       success=[op_put],
                       failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))])),
        (create_compare(key) + put_op(key, ld(0x12, value), lease),
         pb.TxnRequest(compare=[pb.Compare(key=key, target=pb.Compare.CREATE, create_revision=0)],
                       success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value,
                                                                       lease=lease))])),
        (mod_compare(mod_compare_head(key), rev) + delete_op(key),
         pb.TxnRequest(compare=[pb.Compare(key=key, target=pb.Compare.MOD, mod_revision=rev)],
                       success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))])),
    ]
    for raw, want in cases:
        got = pb.TxnRequest.FromString(raw)
        if got != want or raw != want.SerializeToString():
            raise AssertionError(f"pre-encoded request differs:\n{got}\nvs\n{want}")
