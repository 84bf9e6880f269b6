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

from .backend_view import PAUSE, REVISION_KEY, backend_revisions_in_steps, backend_value

KEY_BUCKET = b"key"
_FLUSH = 1 << 16  # bytes gathered before they are hashed: one C call per 64 KiB
_LEASE = struct.Struct(">qq")
_REVS = struct.Struct(">qq")


def hash_records(items: Iterator, seed: bytes = KEY_BUCKET) -> Iterator:
    """Hashes the (main, sub, KeyValue) records as etcd hashes its key bucket; passes the
    pause points (PAUSE) through, and yields the hash last."""
    h = crc32c(seed)
    buf = bytearray()
    pack = REVISION_KEY.pack
    for item in items:
        if item is PAUSE:
            yield PAUSE
            continue
        main, sub, kv = item
        buf += pack(main, b"_", sub)
        if kv.version:
            buf += kv.encoded
        else:  # a tombstone: its key marked, its record only the key
            buf += b"t"
            buf += backend_value(kv)
        if len(buf) >= _FLUSH:
            h = crc32c(buf, h)
            buf.clear()
    yield crc32c(buf, h)


def hash_kv_steps(mvcc, rev: int) -> Iterator:
    """HashKV's hash at ``rev`` (already checked against the compaction and the current
    revision), computed in steps: PAUSE between steps, then the hash. A compaction meanwhile
    raises backend_view.StateChanged."""
    return hash_records(backend_revisions_in_steps(mvcc, rev, as_hashed=True))


def state_hash_steps(mvcc, leases: list) -> Iterator:
    """Hash of the whole state in steps: every revision held, the leases ([[id, ttl], ...])
    and the current and compacted revisions."""
    h = 0
    for item in hash_records(backend_revisions_in_steps(mvcc, 0)):
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
