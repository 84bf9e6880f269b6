"""Snapshot capture and the snapshot file, without stalling writes.

A snapshot is the state at one applied index. The cheap part is taken at a batch boundary, in
log order: the index, the revision R, the list of key indexes (4 ms at 70,000 keys), how many
revisions the history holds, and the leases. The keys' records, the bulk (tens of MB), then the
history's, are encoded a slice per turn of the event loop while the proposer keeps applying
writes: each key as it was at R (writes after R only appended to it, see
KeyIndex.revisions_at), and the history's revisions up to R (later ones are appended after
them). A slice is about a millisecond, so that a snapshot under load delays requests by that
much rather than by tens of milliseconds.
A compaction rewrites key indexes in place, so one that lands (or is still compacting keys)
during a capture abandons it (Overtaken); a later batch starts another.

The file's layout and checksums are snapshot_file.py's: the parts go to storage as they are
made, so a snapshot never holds more than one slice of keys in memory.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from ..log import MemberStorage
from ..mvcc import MVCCStore
from ..mvcc.core import codec
from ..mvcc.kvstore import SNAPSHOT_FORMAT
from . import snapshot_file
from .snapshot_file import SnapshotCorrupt

logger = logging.getLogger(__name__)


class Overtaken(Exception):
    """A compaction (or a new MVCC state) landed while a capture was being encoded."""


SLICE_KEYS = 1_000  # keys encoded per turn of the loop (~1 ms: 256-byte values, a few revisions)
SLICE_REVISIONS = 10_000  # history revisions encoded per turn of the loop (~1 ms)


class Capture:
    def __init__(self, mvcc: MVCCStore, leases: list, index: int, leader: tuple[int, int] = (0, 0),
                 alarms: list | None = None, auth: dict | None = None):
        self.index = index
        self._leader = leader
        self._mvcc = mvcc
        self._rev = mvcc.current_rev
        self._compact_rev = mvcc.compact_rev
        self._key_indexes = list(mvcc.index.all())
        self._history_len = len(mvcc.history)  # revisions up to R
        self._kept_subs = [[r, key, sub] for (r, key), sub in mvcc.kept_subs.items()]
        self._size = mvcc.size
        self._leases = leases
        self._alarms = alarms or []
        self._auth = auth

    async def parts(self, current_mvcc) -> AsyncIterator[bytes]:
        """The file's parts, made one slice of keys at a time as the log writes them; raises
        Overtaken if a compaction (or a new MVCC state) lands meanwhile. ``current_mvcc()``
        is the store's MVCC state now."""
        kis = self._key_indexes
        keys = snapshot_file.SectionChecksum()
        for start in range(0, len(kis), SLICE_KEYS):
            if start:
                await asyncio.sleep(0)
            self._check(current_mvcc)
            part = codec.encode_keys(kis[start:start + SLICE_KEYS], self._rev)
            keys.add(part)
            yield part
        history = snapshot_file.SectionChecksum()
        for start in range(0, self._history_len, SLICE_REVISIONS):
            await asyncio.sleep(0)
            self._check(current_mvcc)  # a compaction cuts the history's front
            part = codec.encode_history(self._mvcc.history, start,
                                        min(start + SLICE_REVISIONS, self._history_len))
            history.add(part)
            yield part
        yield snapshot_file.tail(
            {"index": self.index, "format": SNAPSHOT_FORMAT, "current_rev": self._rev,
             "compact_rev": self._compact_rev, "leases": self._leases, "leader": list(self._leader),
             "kept_subs": self._kept_subs, "size": self._size, "alarms": self._alarms,
             "auth": self._auth},
            keys, history, len(kis))

    def _check(self, current_mvcc) -> None:
        mvcc = self._mvcc
        if current_mvcc() is not mvcc or mvcc.compact_rev != self._compact_rev or mvcc.compacting:
            raise Overtaken()


class Snapshot(NamedTuple):
    mvcc: MVCCStore
    leases: list  # [[id, ttl], ...]
    leader: tuple[int, int]  # (member id, term) of the leader as of the snapshot
    alarms: list = []  # [[member id, alarm type], ...] raised
    auth: dict | None = None  # users, roles, enabled, revision (AuthState.dump)


def parse(data: snapshot_file.Buffer) -> Snapshot:
    """The state in a snapshot file's bytes (read, or mapped: decoded from views of them, with
    no copies); SnapshotCorrupt if they are not whole and intact (or, checksums passing, do not
    decode)."""
    found = snapshot_file.sections(data, checked=False)
    env = found.envelope
    check = snapshot_file.SectionsCheck(found)  # beside the decoding, on the other core
    try:
        try:
            mvcc = MVCCStore.load({"format": env["format"], "current_rev": env["current_rev"],
                                   "compact_rev": env["compact_rev"], "keys": found.keys,
                                   "history": found.history,
                                   "kept_subs": env.get("kept_subs", ()), "size": env.get("size")})
            leader_id, term = env.get("leader", (0, 0))
            snap = Snapshot(mvcc, env["leases"], (leader_id, term), env.get("alarms", []),
                            env.get("auth"))
            undecodable = None
        except (ValueError, KeyError, TypeError) as e:
            # (Only its words are kept: its traceback would hold views of a mapped file.)
            undecodable = str(e).removeprefix("corrupt snapshot: ")
        check.wait()  # damaged bytes are refused as damaged, not as undecodable
        if undecodable is not None:
            raise SnapshotCorrupt(f"undecodable: {undecodable}")
        return snap
    finally:
        check.join()
        found.release()


class Snapshotter:
    """Saves the applied state every ``snapshot_count`` applied entries (and when asked), beside
    the apply loop: the cheap part of a capture is taken between two batches, in log order; the
    rest is encoded and written while the loop keeps applying. Once a snapshot is durable,
    ``saved(index)`` lets the log drop what it covers."""

    def __init__(self, storage: MemberStorage, capture: Callable[[], Capture],
                 applied_entries: Callable[[], int], mvcc: Callable[[], MVCCStore],
                 compaction_done, saved, snapshot_count: int):
        self._storage = storage
        self._capture = capture  # a Capture of the applied state now
        self._applied_entries = applied_entries  # entries applied by this process so far
        self._mvcc = mvcc
        self._compaction_done = compaction_done  # awaitable factory: every key index compacted
        self._saved = saved  # async (index): after a snapshot is durable
        self.snapshot_count = snapshot_count
        self.index = 0  # the newest snapshot's log index
        self._entries_at_last = 0
        self._task: asyncio.Task | None = None

    def maybe_start(self) -> None:
        """After each batch: starts a snapshot when one is due (a capture refuses key indexes
        still being compacted: the next batch tries again)."""
        if (self._storage.durable and self._task is None and not self._mvcc().compacting
                and self._applied_entries() - self._entries_at_last >= self.snapshot_count):
            self._task = asyncio.get_running_loop().create_task(
                self._save(self._capture()), name="snapshot")

    async def _save(self, capture: Capture, background: bool = True) -> None:
        index = capture.index
        entries = self._applied_entries()
        try:
            while True:
                try:
                    await self._storage.save_snapshot(index, capture.parts(self._mvcc))
                    break
                except Overtaken:
                    if background:
                        return  # still due: the next batch tries again
                # Any other task runs between batches, so a capture taken here is consistent.
                capture = self._capture()
                index, entries = capture.index, self._applied_entries()
            self.index = index
            self._entries_at_last = entries
            await self._saved(index)
        except Exception:
            if not background:
                raise
            logger.exception("snapshot at %d failed; the log keeps its records", index)
        finally:
            self._task = None

    async def save_now(self) -> None:
        """Saves the applied state now, so recovery starts here (the log drops what it covers)."""
        while self._task is not None:
            await asyncio.shield(self._task)
        await self._compaction_done()
        self._task = asyncio.get_running_loop().create_task(
            self._save(self._capture(), background=False), name="snapshot")
        await self._task

    async def wait(self) -> None:
        """Until a snapshot being written is done (at close)."""
        while self._task is not None:
            await asyncio.shield(self._task)
