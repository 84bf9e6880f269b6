"""Snapshot capture and the snapshot file, without stalling writes.

A snapshot is the state at one applied index. The cheap part is taken at a batch boundary, in
log order: the index, the revision R, the list of key indexes, the history records (a few ms at
100,000 revisions) and the leases. The keys' records, the bulk (tens of MB), are then encoded a
slice of keys per turn of the event loop while the proposer keeps applying writes: each key is
encoded as it was at R (writes after R only appended to it, see state_codec.generations_at).
A compaction rewrites key indexes in place, so one that lands during a capture abandons it; the
next batch starts another.

File: u32 length of a msgpack envelope, the envelope (index, revisions, leases, section
lengths), then the keys' records and the history records (kvstore/mvcc/state_codec.py). The
parts are handed to the log as a list, so the bulk is never copied into one buffer.
"""
from __future__ import annotations

import asyncio
import struct

import msgpack

from ..mvcc import MVCCStore
from ..mvcc.core import codec
from ..mvcc.kvstore import SNAPSHOT_FORMAT

SLICE_KEYS = 5_000  # keys encoded per turn of the loop (~3 ms at 256-byte values)
_U32 = struct.Struct("<I")


class Capture:
    def __init__(self, mvcc: MVCCStore, leases: list, index: int):
        self.index = index
        self._mvcc = mvcc
        self._rev = mvcc.current_rev
        self._compact_rev = mvcc.compact_rev
        self._key_indexes = list(mvcc.index.all())
        self._history = codec.encode_history(mvcc.history)
        self._leases = leases

    async def parts(self, current_mvcc) -> list[bytes] | None:
        """The file's parts, or None if a compaction (or a new MVCC state) overtook us.
        ``current_mvcc()`` is the store's MVCC state now."""
        keys = []
        kis = self._key_indexes
        for start in range(0, len(kis), SLICE_KEYS):
            if start:
                await asyncio.sleep(0)
                if current_mvcc() is not self._mvcc or self._mvcc.compact_rev != self._compact_rev:
                    return None
            keys.append(codec.encode_keys(kis[start:start + SLICE_KEYS], self._rev))
        envelope = msgpack.packb({
            "index": self.index, "format": SNAPSHOT_FORMAT, "current_rev": self._rev,
            "compact_rev": self._compact_rev, "leases": self._leases,
            "keys_len": sum(map(len, keys)), "history_len": len(self._history)})
        return [_U32.pack(len(envelope)), envelope, *keys, self._history]


def parse(data: bytes) -> tuple[MVCCStore, list]:
    """(MVCC state, leases) from a snapshot file's bytes."""
    if len(data) < 4:
        raise ValueError("corrupt snapshot: no envelope")
    (n,) = _U32.unpack_from(data, 0)
    if 4 + n > len(data):
        raise ValueError("corrupt snapshot: truncated envelope")
    env = msgpack.unpackb(data[4:4 + n], raw=False)
    keys_at = 4 + n
    history_at = keys_at + env["keys_len"]
    if history_at + env["history_len"] != len(data):
        raise ValueError("corrupt snapshot: sections do not add up to the file")
    mvcc = MVCCStore.load({"format": env["format"], "current_rev": env["current_rev"],
                           "compact_rev": env["compact_rev"], "keys": data[keys_at:history_at],
                           "history": data[history_at:]})
    return mvcc, env["leases"]
