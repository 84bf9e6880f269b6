"""The MVCC state as flat bytes for snapshots: pure-Python twin of the codec in
ext/mvcc_core.pyx (same bytes out, same objects back; tests/test_ext_twins.py checks it).

A snapshot used to be nested lists for msgpack, built object by object, which cost ~5 µs of
CPU per key or revision on every snapshot. These are plain records, little-endian:

keys:     per key index: u32 key length, key, u32 revisions (tombstones included, oldest
          first); per revision (KeyValue):
          i64 create_revision, i64 mod_revision, i64 version, i64 lease, u32 value length, value
history:  per revision: i64 revision, u32 changes; per change: u32 key length, key
          (the KeyValue is the key's revision at that mod_revision, found in keys)
"""
from __future__ import annotations

import struct

from .history import History
from .key_index import KeyIndex
from .kv import KeyValue

_U32 = struct.Struct("<I")
_KV = struct.Struct("<qqqqI")
_REV = struct.Struct("<qI")


def encode_keys(key_indexes, at_rev: int = 0) -> bytes:
    """The key indexes' records; with ``at_rev``, as they were at that revision."""
    out = bytearray()
    for ki in key_indexes:
        revs = ki.revisions_at(at_rev) if at_rev else ki.revisions
        out += _U32.pack(len(ki.key))
        out += ki.key
        out += _U32.pack(len(revs))
        for kv in revs:
            value = kv.value
            out += _KV.pack(kv.create_revision, kv.mod_revision, kv.version, kv.lease, len(value))
            out += value
    return bytes(out)


def decode_keys(data) -> list:
    """The KeyIndexes, in the order encoded (``data``: bytes or any buffer)."""
    out = []
    view = memoryview(data)
    pos, end = 0, len(data)
    try:
        while pos < end:
            (n,) = _U32.unpack_from(data, pos)
            key = bytes(view[pos + 4:pos + 4 + n])
            pos += 4 + n
            if len(key) != n:
                raise ValueError("corrupt snapshot: truncated key")
            (nrevs,) = _U32.unpack_from(data, pos)
            pos += 4
            revs = []
            for _ in range(nrevs):
                create, mod, version, lease, vlen = _KV.unpack_from(data, pos)
                pos += _KV.size
                value = bytes(view[pos:pos + vlen])
                if len(value) != vlen:
                    raise ValueError("corrupt snapshot: truncated value")
                pos += vlen
                revs.append(KeyValue(key, create, mod, version, value, lease))
            ki = KeyIndex(key, revs)
            out.append(ki)
    except struct.error:
        raise ValueError("corrupt snapshot: truncated record") from None
    return out


def encode_history(history, start: int = 0, stop: int | None = None) -> bytes:
    """The history's records from position ``start`` (0: its oldest revision) to ``stop``
    (exclusive; None: its end): slices encoded in turn concatenate to the whole."""
    out = bytearray()
    end = len(history) if stop is None else min(stop, len(history))
    for i in range(max(start, 0), end):
        rev, changes = history[i]
        out += _REV.pack(rev, len(changes))
        for kv in changes:
            out += _U32.pack(len(kv.key))
            out += kv.key
    return bytes(out)


def decode_history(data, by_key: dict) -> History:
    """The History, each change the revision of its key (``by_key``: key -> KeyIndex) whose
    mod_revision is ``rev``."""
    out = History()
    view = memoryview(data)
    pos, end = 0, len(data)
    try:
        while pos < end:
            rev, n = _REV.unpack_from(data, pos)
            pos += _REV.size
            changes = []
            for _ in range(n):
                (klen,) = _U32.unpack_from(data, pos)
                key = bytes(view[pos + 4:pos + 4 + klen])
                if len(key) != klen:
                    raise ValueError("corrupt snapshot: truncated record")
                pos += 4 + klen
                changes.append(_revision_of(by_key, key, rev))
            out.append(rev, tuple(changes))
    except struct.error:
        raise ValueError("corrupt snapshot: truncated record") from None
    return out


def decode_state(keys, history) -> tuple[list, History]:
    """(the KeyIndexes in the order encoded, the History): decode_keys, then decode_history
    through a dict of the keys. The compiled twin finds each change by its revision instead
    (same objects, same errors). Both sections may be any buffer (views of a mapped file)."""
    key_indexes = decode_keys(keys)
    return key_indexes, decode_history(history, {ki.key: ki for ki in key_indexes})


def _revision_of(by_key: dict, key: bytes, rev: int):
    ki = by_key.get(key)
    kv = ki.at(rev) if ki is not None else None
    if kv is None:
        raise ValueError(f"corrupt snapshot: history names revision {rev} of key {key!r}, "
                         "which the keys lack")
    return kv
