"""HashKV as etcd computes it, and Hash over the whole state.

etcd's HashKV is a CRC-32C (Castagnoli) over the name of its ``key`` bucket, then over each
record of that bucket up to the hashed revision, in key order: the revision key and the
marshaled KeyValue (backend_view.py). Two members holding the same revisions agree, and so do
kvstore and etcd given the same writes. After a compaction, etcd 3.4 hashes only the older
records its index keeps at the hashed revision (``keep := kvindex.Keep(rev)`` in its
HashByRev), not all that compaction kept: so does this.

etcd's Hash covers its whole bbolt file, which depends on bbolt's page layout: kvstore's
cannot match it. Here it covers the same records, then the leases and the revisions, so it is
stable for the same state.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

from crc32c import crc32c

from .backend_view import PAUSE, walk_chunks
from .core import encode_records

KEY_BUCKET = b"key"
_FLUSH = 1 << 20  # values' bytes encoded and hashed at a time
_LEASE = struct.Struct(">qq")
_REVS = struct.Struct(">qq")


def hash_records(chunks: Iterator, seed: bytes = KEY_BUCKET) -> Iterator:
    """Hashes the (main, sub, KeyValue) records, given a list at a time (backend_view's
    walk_chunks), as etcd hashes its key bucket; passes the pause points (PAUSE) through,
    and yields the hash last. The records are encoded and hashed up to _FLUSH bytes at a time
    (core.encode_records)."""
    h = crc32c(seed)
    for chunk in chunks:
        if chunk is PAUSE:
            yield PAUSE
            continue
        i = 0
        while i < len(chunk):
            data, i = encode_records(chunk, i, _FLUSH)
            h = crc32c(data, h)
    yield h


def hash_kv_steps(mvcc, rev: int) -> Iterator:
    """HashKV's hash at ``rev`` (already checked against the compaction and the current
    revision), computed in steps: PAUSE between steps, then the hash. A compaction meanwhile
    raises backend_view.StateChanged."""
    return hash_records(walk_chunks(mvcc, rev, as_hashed=True))


def state_hash_steps(mvcc, leases: list) -> Iterator:
    """Hash of the whole state in steps: every revision held, the leases ([[id, ttl], ...])
    and the current and compacted revisions."""
    h = 0
    for item in hash_records(walk_chunks(mvcc, mvcc.current_rev)):
        if item is PAUSE:
            yield PAUSE
        else:
            h = item
    tail = b"".join(_LEASE.pack(lease_id, ttl) for lease_id, ttl in sorted(leases))
    yield crc32c(tail + _REVS.pack(mvcc.current_rev, mvcc.compact_rev), h)


def run_steps(steps: Iterator) -> int:
    """The result of a computation in steps, run without pausing."""
    result = 0
    for item in steps:
        if item is not PAUSE:
            result = item
    return result
