"""Maintenance.Snapshot: the applied state as an etcd 3.4 db file, streamed as etcd streams it.

The state is taken at one revision, between two applied batches (the MVCC state, its leases,
the applied index). The db file (etcd_db.py) is then built from it into a temporary file, a
few thousand revisions per turn of the event loop, while writes go on: they only add revisions
after the one taken. A compaction (or a snapshot installed) meanwhile starts the build again.

The stream is etcd's (v3rpc maintenance.go): 32 KiB blobs, each with the bytes still to come
after it, then one last message whose blob is the SHA-256 of everything sent. ``etcdctl
snapshot save`` appends it to the file, and ``etcdctl snapshot restore`` checks it.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from ..api import rpc_pb2 as pb
from ..mvcc import MVCCStore
from ..mvcc.backend_view import StateChanged, backend_revisions_in_steps
from .etcd_db import Member, write_db

logger = logging.getLogger(__name__)

CHUNK = 32 * 1024  # etcd's snapshotSendBufferSize
ATTEMPTS = 3  # builds a compaction may overtake before one runs without pausing


class SnapshotState(NamedTuple):
    """What the db is built from, taken in one step between two applied batches."""
    mvcc: MVCCStore
    leases: list  # [[id, ttl], ...]
    applied_index: int
    member: Member
    alarms: list = []  # [[member id, alarm type], ...] raised
    auth: dict | None = None  # AuthState.dump()


async def build(take: Callable[[], SnapshotState], current_mvcc: Callable[[], MVCCStore],
                temp_dir: str | None = None):
    """A temporary file (in ``temp_dir``, unnamed: nothing is left behind) holding the db of
    the state ``take()`` gives, and its size. Between steps the loop runs other work; a
    compaction or a new MVCC state (``current_mvcc()``) meanwhile starts over from a new
    ``take()``. After ATTEMPTS such restarts the build runs in one go, so that nothing can
    change under it (as store/hashing.py's computations do)."""
    for attempt in range(ATTEMPTS + 1):
        state = take()
        mvcc = state.mvcc
        out = tempfile.TemporaryFile(prefix="kvstore-snapshot-", dir=temp_dir)
        steps = write_db(out, backend_revisions_in_steps(mvcc, mvcc.current_rev),
                         [tuple(lease) for lease in state.leases], [state.member],
                         state.applied_index, mvcc.compact_rev,
                         [tuple(alarm) for alarm in state.alarms], state.auth)
        pause = attempt < ATTEMPTS
        try:
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    return out, done.value
                if pause:
                    await asyncio.sleep(0)
                    if current_mvcc() is not mvcc:
                        raise StateChanged("a snapshot was installed")
        except StateChanged as e:
            out.close()
            logger.info("snapshot stream: %s; building again", e)
        except BaseException:
            out.close()
            raise
    raise AssertionError("unreachable: the last attempt does not pause")


async def stream(take: Callable[[], SnapshotState], current_mvcc: Callable[[], MVCCStore],
                 temp_dir: str | None = None) -> AsyncIterator[bytes]:
    """The serialized SnapshotResponses of the state ``take()`` gives."""
    out, total = await build(take, current_mvcc, temp_dir)
    with out:
        out.seek(0)
        digest = hashlib.sha256()
        sent = 0
        while sent < total:
            blob = out.read(min(CHUNK, total - sent))
            if not blob:
                raise OSError(f"snapshot file ended at {sent} of {total} bytes")
            sent += len(blob)
            digest.update(blob)
            yield pb.SnapshotResponse(remaining_bytes=total - sent, blob=blob).SerializeToString()
        yield pb.SnapshotResponse(remaining_bytes=0, blob=digest.digest()).SerializeToString()
