"""Snapshot capture and the snapshot file, without stalling writes.

A snapshot is the state at one applied index. The cheap part is taken at a batch boundary, in
log order: the index, the revision R, the list of key indexes, the history records (a few ms at
100,000 revisions) and the leases. The keys' records, the bulk (tens of MB), are then encoded a
slice of keys per turn of the event loop while the proposer keeps applying writes: each key is
encoded as it was at R (writes after R only appended to it, see KeyIndex.revisions_at).
A compaction rewrites key indexes in place, so one that lands (or is still compacting keys)
during a capture abandons it (Overtaken); a later batch starts another.

File: the keys' records, the history records (kvstore/mvcc/state_codec.py), then a msgpack
envelope (index, revisions, leases, section lengths) and its u32 length. The envelope comes
last because the keys' length is known only once they are encoded: the parts go to the log as
they are made, so a snapshot never holds more than one slice of keys in memory.
"""
from __future__ import annotations

import asyncio
import struct
from typing import AsyncIterator

import msgpack

from ..mvcc import MVCCStore
from ..mvcc.core import codec
from ..mvcc.kvstore import SNAPSHOT_FORMAT


class Overtaken(Exception):
    """A compaction (or a new MVCC state) landed while a capture was being encoded."""


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

    async def parts(self, current_mvcc) -> AsyncIterator[bytes]:
        """The file's parts, made one slice of keys at a time as the log writes them; raises
        Overtaken if a compaction (or a new MVCC state) lands meanwhile. ``current_mvcc()``
        is the store's MVCC state now."""
        kis = self._key_indexes
        keys_len = 0
        for start in range(0, len(kis), SLICE_KEYS):
            if start:
                await asyncio.sleep(0)
            mvcc = self._mvcc
            if (current_mvcc() is not mvcc or mvcc.compact_rev != self._compact_rev
                    or mvcc.compacting):
                raise Overtaken()
            part = codec.encode_keys(kis[start:start + SLICE_KEYS], self._rev)
            keys_len += len(part)
            yield part
        yield self._history
        envelope = msgpack.packb({
            "index": self.index, "format": SNAPSHOT_FORMAT, "current_rev": self._rev,
            "compact_rev": self._compact_rev, "leases": self._leases,
            "keys_len": keys_len, "history_len": len(self._history)})
        yield envelope + _U32.pack(len(envelope))


def parse(data: bytes) -> tuple[MVCCStore, list]:
    """(MVCC state, leases) from a snapshot file's bytes."""
    if len(data) < 4:
        raise ValueError("corrupt snapshot: no envelope")
    (n,) = _U32.unpack_from(data, len(data) - 4)
    if 4 + n > len(data):
        raise ValueError("corrupt snapshot: truncated envelope")
    try:
        env = msgpack.unpackb(data[len(data) - 4 - n:len(data) - 4], raw=False)
        keys_len, history_len = env["keys_len"], env["history_len"]
    except (ValueError, KeyError, TypeError, msgpack.UnpackException):
        raise ValueError("corrupt snapshot: unreadable envelope") from None
    if keys_len + history_len + n + 4 != len(data):
        raise ValueError("corrupt snapshot: sections do not add up to the file")
    mvcc = MVCCStore.load({"format": env["format"], "current_rev": env["current_rev"],
                           "compact_rev": env["compact_rev"], "keys": data[:keys_len],
                           "history": data[keys_len:keys_len + history_len]})
    return mvcc, env["leases"]
