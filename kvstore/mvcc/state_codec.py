"""The MVCC state as flat bytes for snapshots: pure-Python twin of the codec in
ext/mvcc_core.pyx (same bytes out, same objects back; tests/test_ext_twins.py checks it).

A snapshot used to be nested lists for msgpack, built object by object, which cost ~5 µs of
CPU per key or revision on every snapshot. These are plain records, little-endian:

keys:     per key index: u32 key length, key, u32 generations;
          per generation: u32 revisions; per revision (KeyValue):
          i64 create_revision, i64 mod_revision, i64 version, i64 lease, u32 value length, value
history:  per revision: i64 revision, u32 changes; per change: u32 key length, key
          (the KeyValue is the key's revision at that mod_revision, found in keys)
"""
from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from operator import attrgetter

from .key_index import KeyIndex
from .kv import KeyValue

_U32 = struct.Struct("<I")
_KV = struct.Struct("<qqqqI")
_REV = struct.Struct("<qI")
_mod_revision = attrgetter("mod_revision")


def generations_at(generations: list, at_rev: int) -> list:
    """The generations as they were when ``at_rev`` was the newest revision.

    Since then, writes only appended: revisions to the last generation, and after a tombstone
    a new generation. So each generation is cut to its revisions <= at_rev, and the first one
    that loses any was the last generation then."""
    out = []
    for g in generations:
        n = bisect_right(g, at_rev, key=_mod_revision)
        out.append(g[:n] if n < len(g) else g)
        if n < len(g):
            break
    return out


def encode_keys(key_indexes, at_rev: int = 0) -> bytes:
    """The key indexes' records; with ``at_rev``, as they were at that revision."""
    out = bytearray()
    for ki in key_indexes:
        gens = generations_at(ki.generations, at_rev) if at_rev else ki.generations
        out += _U32.pack(len(ki.key))
        out += ki.key
        out += _U32.pack(len(gens))
        for g in gens:
            out += _U32.pack(len(g))
            for kv in g:
                out += _KV.pack(kv.create_revision, kv.mod_revision, kv.version, kv.lease,
                                len(kv.value))
                out += kv.value
    return bytes(out)


def decode_keys(data: bytes) -> list:
    """The KeyIndexes, in the order encoded."""
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
            (ngens,) = _U32.unpack_from(data, pos)
            pos += 4
            ki = KeyIndex(key)
            gens = []
            for _ in range(ngens):
                (nkvs,) = _U32.unpack_from(data, pos)
                pos += 4
                g = []
                for _ in range(nkvs):
                    create, mod, version, lease, vlen = _KV.unpack_from(data, pos)
                    pos += _KV.size
                    value = bytes(view[pos:pos + vlen])
                    if len(value) != vlen:
                        raise ValueError("corrupt snapshot: truncated value")
                    pos += vlen
                    g.append(KeyValue(key, create, mod, version, value, lease))
                gens.append(g)
            ki.generations = gens
            out.append(ki)
    except struct.error:
        raise ValueError("corrupt snapshot: truncated record") from None
    return out


def encode_history(history) -> bytes:
    out = bytearray()
    for rev, changes in history:
        out += _REV.pack(rev, len(changes))
        for kv in changes:
            out += _U32.pack(len(kv.key))
            out += kv.key
    return bytes(out)


def decode_history(data: bytes, by_key: dict) -> list:
    """[(rev, (KeyValue, ...)), ...], each change the revision of its key (``by_key``:
    key -> KeyIndex) whose mod_revision is ``rev``."""
    out = []
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
                pos += 4 + klen
                changes.append(_revision_of(by_key, key, rev))
            out.append((rev, tuple(changes)))
    except struct.error:
        raise ValueError("corrupt snapshot: truncated record") from None
    return out


def _revision_of(by_key: dict, key: bytes, rev: int):
    ki = by_key.get(key)
    if ki is not None:
        for g in ki.generations:  # generations and their revisions ascend
            if g and g[-1].mod_revision >= rev:
                i = bisect_left(g, rev, key=_mod_revision)
                if i < len(g) and g[i].mod_revision == rev:
                    return g[i]
                break
    raise ValueError(f"corrupt snapshot: history names revision {rev} of key {key!r}, which the keys lack")
