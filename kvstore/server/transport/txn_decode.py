"""TxnRequests nested deeper than protobuf's parser goes.

upb refuses messages more than 100 levels deep, and a nested Txn takes two levels a step
(TxnRequest, RequestOp): it could not read a Txn nested 50 deep, which etcd executes (etcd
counts every op of every level against --max-txn-ops, so 127 levels fit its default 128). Such
a request is read here from the wire, one level at a time with no recursion, building the
message in place; past MAX_DEPTH levels it is refused as etcd would refuse it, with too many
operations.
"""
from __future__ import annotations

from google.protobuf.message import DecodeError

from ... import errors
from ...api import rpc_pb2 as pb
from ...mvcc.wire import read_varint

MAX_DEPTH = 10_000  # levels; far past any --max-txn-ops a deployment sets

_TXN_OPS = {2: "success", 3: "failure"}
_OP_FIELDS = {1: "request_range", 2: "request_put", 3: "request_delete_range"}


def decode_txn(raw: bytes) -> pb.TxnRequest:
    try:
        return pb.TxnRequest.FromString(raw)
    except DecodeError as e:
        if "MaxDepth" not in str(e):
            raise
    root = pb.TxnRequest()
    stack: list[tuple[object, memoryview, int]] = [(root, memoryview(raw), 0)]
    while stack:
        msg, data, depth = stack.pop()
        if depth % 2 == 0:  # a TxnRequest
            for field, value in _length_delimited(data):
                if field == 1:
                    msg.compare.add().ParseFromString(value.tobytes())  # type: ignore[attr-defined]
                elif field in _TXN_OPS:
                    op = getattr(msg, _TXN_OPS[field]).add()
                    stack.append((op, value, depth + 1))
        else:  # a RequestOp
            for field, value in _length_delimited(data):
                if field == 4:
                    if depth // 2 + 1 > MAX_DEPTH:
                        raise errors.TooManyOps()
                    nested = msg.request_txn  # type: ignore[attr-defined]
                    nested.SetInParent()
                    stack.append((nested, value, depth + 1))
                elif field in _OP_FIELDS:
                    sub = getattr(msg, _OP_FIELDS[field])
                    sub.ParseFromString(value.tobytes())
                    sub.SetInParent()
    return root


def _length_delimited(data: memoryview):
    """(field number, bytes) of each length-delimited field; other wire types are skipped."""
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = _varint(data, pos)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 2:
            n, pos = _varint(data, pos)
            if pos + n > end:
                raise DecodeError("truncated message")
            yield field, data[pos:pos + n]
            pos += n
        elif wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise DecodeError(f"wire type {wire_type}")
    if pos != end:
        raise DecodeError("truncated message")


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    try:
        return read_varint(data, pos)
    except ValueError:
        raise DecodeError("truncated varint") from None
