"""Compaction in slices: a compaction takes effect at once for reads and the history when it is
applied; the key indexes are then compacted a slice per turn of the event loop, so that a
compaction of many keys never stalls requests for long (etcd compacts in batches with pauses
too)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..mvcc import MVCCStore

# Key indexes compacted per turn of the loop (~2-5 ms): a compaction's cost comes in slices.
SLICE_KEYS = 10_000


class Compactor:
    def __init__(self, mvcc: Callable[[], MVCCStore]):
        self._mvcc = mvcc  # the current MVCC state (a snapshot install replaces it)
        self._task: asyncio.Task | None = None

    def schedule(self) -> None:
        """After a compaction is applied: compacts the key indexes in slices."""
        if self._task is not None:
            return  # the running one goes on to the newest compaction's revision
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not started: no loop to share
            self._mvcc().finish_compaction()
            return
        self._task = loop.create_task(self._run(), name="compaction")

    async def _run(self) -> None:
        try:
            while self._mvcc().compact_step(SLICE_KEYS):  # noqa: ASYNC110 - not a wait: a slice a turn
                await asyncio.sleep(0)
        finally:
            self._task = None

    async def done(self) -> None:
        """Once every key index is compacted."""
        while self._task is not None:
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        """At close: the log (or snapshot) holds the compaction, the next start finishes it."""
        if self._task is not None:
            self._task.cancel()
