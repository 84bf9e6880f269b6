"""Protobuf wire encoding of KeyValues and of the responses made of them: pure-Python twin of
ext/kv_wire.pxi (same bytes out; tests/test_wire.py checks both against protobuf's own
serializer on generated messages).

Every stored revision keeps its ``mvccpb.KeyValue`` serialized (``KeyValue.encoded``), so a
read copies bytes into its response instead of building a protobuf object per key. Fields are
written in field-number order and zero values are left out, exactly as protobuf serializes
proto3 messages, so the bytes are the ones etcd's clients would get from protobuf.
"""
from __future__ import annotations

# Tags: (field number << 3) | wire type (0 varint, 2 length-delimited).
_KV_KEY, _KV_CREATE, _KV_MOD, _KV_VERSION, _KV_VALUE, _KV_LEASE = 0x0A, 0x10, 0x18, 0x20, 0x2A, 0x30
_HDR_CLUSTER, _HDR_MEMBER, _HDR_REVISION, _HDR_TERM = 0x08, 0x10, 0x18, 0x20
_RANGE_HEADER, _RANGE_KVS, _RANGE_MORE, _RANGE_COUNT = 0x0A, 0x12, 0x18, 0x20
_STREAM_RANGE_RESPONSE = 0x0A  # RangeStreamResponse.range_response


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    """An int64/uint64 as protobuf writes it (negative int64s take ten bytes)."""
    if 0 <= n < 128:  # most lengths and tags: no loop, no new object
        return _ONE_BYTE[n]
    n &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``; ValueError if it is cut short."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _int_field(tag: int, n: int) -> bytes:
    return bytes((tag,)) + varint(n) if n else b""


def _bytes_field(tag: int, b: bytes) -> bytes:
    return bytes((tag,)) + varint(len(b)) + b if b else b""


def encode_kv(key: bytes, create_revision: int, mod_revision: int, version: int, value: bytes,
              lease: int) -> tuple[bytes, int, int]:
    """(encoded, value_start, value_end): the serialized KeyValue and where its value field
    lies (tag to end of data; empty when the value is)."""
    head = (_bytes_field(_KV_KEY, key) + _int_field(_KV_CREATE, create_revision)
            + _int_field(_KV_MOD, mod_revision) + _int_field(_KV_VERSION, version))
    value_field = _bytes_field(_KV_VALUE, value)
    return (head + value_field + _int_field(_KV_LEASE, lease), len(head),
            len(head) + len(value_field))


def kv_bytes(kv, keys_only: bool) -> bytes:
    """The stored KeyValue's bytes; without its value field when ``keys_only``."""
    if not keys_only:
        return kv.encoded
    e = kv.encoded
    return e[:kv.value_start] + e[kv.value_end:]


def encode_header(cluster_id: int, member_id: int, revision: int, raft_term: int) -> bytes:
    """A ResponseHeader's body."""
    return (_int_field(_HDR_CLUSTER, cluster_id) + _int_field(_HDR_MEMBER, member_id)
            + _int_field(_HDR_REVISION, revision) + _int_field(_HDR_TERM, raft_term))


def range_response(header: bytes | None, kvs: list, keys_only: bool, more: bool,
                   count: int) -> bytes:
    """A RangeResponse; ``header`` is a ResponseHeader's body, None for none."""
    parts = []
    if header is not None:
        parts.append(bytes((_RANGE_HEADER,)) + varint(len(header)) + header)
    for kv in kvs:
        b = kv_bytes(kv, keys_only)
        parts.append(bytes((_RANGE_KVS,)) + varint(len(b)) + b)
    if more:
        parts.append(b"\x18\x01")
    parts.append(_int_field(_RANGE_COUNT, count))
    return b"".join(parts)


def range_stream_response(range_response_bytes: bytes) -> bytes:
    """A RangeStreamResponse carrying one RangeResponse chunk (always present, even empty)."""
    return (bytes((_STREAM_RANGE_RESPONSE,)) + varint(len(range_response_bytes))
            + range_response_bytes)


# -- watch -------------------------------------------------------------------------------------

_EV_DELETE = b"\x08\x01"  # Event.type DELETE (PUT is 0: left out)
_EV_KV, _EV_PREV_KV = 0x12, 0x1A
_WATCH_HEADER, _WATCH_ID, _WATCH_FRAGMENT, _WATCH_EVENTS = 0x0A, 0x10, b"\x38\x01", 0x5A


def event(kv, prev) -> bytes:
    """An mvccpb.Event for the revision ``kv`` (a tombstone makes a DELETE), with ``prev``
    as its prev_kv unless None."""
    parts = [_EV_DELETE if kv.version == 0 else b"", bytes((_EV_KV,)),
             varint(len(kv.encoded)), kv.encoded]
    if prev is not None:
        parts += [bytes((_EV_PREV_KV,)), varint(len(prev.encoded)), prev.encoded]
    return b"".join(parts)


def event_field_size(ev: bytes) -> int:
    """What one event adds to a WatchResponse."""
    return 1 + len(varint(len(ev))) + len(ev)


def watch_response_size(header: bytes, watch_id: int, events: list, fragment: bool) -> int:
    return (1 + len(varint(len(header))) + len(header) + len(_int_field(_WATCH_ID, watch_id))
            + (2 if fragment else 0) + sum(event_field_size(ev) for ev in events))


def watch_response(header: bytes, watch_id: int, events: list, fragment: bool) -> bytes:
    """A WatchResponse carrying events (serialized Events) for one watcher."""
    parts = [bytes((_WATCH_HEADER,)), varint(len(header)), header,
             _int_field(_WATCH_ID, watch_id), _WATCH_FRAGMENT if fragment else b""]
    for ev in events:
        parts += [bytes((_WATCH_EVENTS,)), varint(len(ev)), ev]
    return b"".join(parts)


# -- writes and txns ---------------------------------------------------------------------------

_PUT_PREV_KV = 0x12
_DELETE_DELETED, _DELETE_PREV_KVS = 0x10, 0x1A
_TXN_SUCCEEDED, _TXN_RESPONSES = b"\x10\x01", 0x1A
# ResponseOp's oneof: response_range 1, response_put 2, response_delete_range 3, response_txn 4
OP_RANGE, OP_PUT, OP_DELETE_RANGE, OP_TXN = 0x0A, 0x12, 0x1A, 0x22


def _message_field(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + varint(len(body)) + body


def put_response(header: bytes, prev_kv) -> bytes:
    """A PutResponse; ``prev_kv`` None for none."""
    out = _message_field(_RANGE_HEADER, header)
    if prev_kv is not None:
        out += _message_field(_PUT_PREV_KV, prev_kv.encoded)
    return out


def lease_keepalive_response(header: bytes, lease_id: int, ttl: int) -> bytes:
    """A LeaseKeepAliveResponse: the keep-alive stream's answer, built without protobuf."""
    return _message_field(_RANGE_HEADER, header) + _int_field(0x10, lease_id) + _int_field(0x18, ttl)


def delete_range_response(header: bytes, deleted: int, prev_kvs: list) -> bytes:
    return (_message_field(_RANGE_HEADER, header) + _int_field(_DELETE_DELETED, deleted)
            + b"".join(_message_field(_DELETE_PREV_KVS, kv.encoded) for kv in prev_kvs))


def txn_response(header: bytes, succeeded: bool, ops: list) -> bytes:
    """A TxnResponse; ``ops`` are (OP_* tag, serialized response) in order."""
    parts = [_message_field(_RANGE_HEADER, header), _TXN_SUCCEEDED if succeeded else b""]
    for tag, body in ops:
        parts.append(_message_field(_TXN_RESPONSES, _message_field(tag, body)))
    return b"".join(parts)
