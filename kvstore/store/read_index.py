"""Linearizable reads on a shared log: wait until this member has applied everything the log
held when the read arrived (etcd's ReadIndex, with the log's last index for the leader's commit
index).

Concurrent reads share one question to the log. A read that arrives while a question is out
waits for the next one: the answer to a question asked before the read arrived could miss a
write acknowledged in between.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .. import errors
from ..log import LogUnavailable, SharedLog

logger = logging.getLogger(__name__)

# etcd's ReqTimeout with default settings (5 s + 2 x the 1 s election timeout): a read whose
# index cannot be had by then gets etcd's "request timed out".
READ_INDEX_TIMEOUT = 7.0


class ReadIndex:
    def __init__(self, wal: SharedLog, wait_applied: Callable[[int], Awaitable[None]]):
        self._log = wal
        self._wait_applied = wait_applied
        self._pending: list[asyncio.Future] = []
        self._task: asyncio.Task | None = None
        self.rounds = 0  # questions asked of the log (reads share them)

    def wait(self) -> asyncio.Future:
        """Done once a read may be served from the applied state."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.append(fut)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="read-index")
        return fut

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self.rounds += 1
                try:
                    index = await asyncio.wait_for(self._log.read_index(), READ_INDEX_TIMEOUT)
                except (TimeoutError, LogUnavailable) as e:
                    logger.warning("no read index from the log: %r", e)
                    _settle(batch, errors.Timeout())
                    continue
                # a member that cannot catch up (its follower is being replaced) answers in time
                deadline = asyncio.get_running_loop().call_later(
                    READ_INDEX_TIMEOUT, _settle, batch, errors.Timeout())

                def settle(f: asyncio.Future, batch: list[asyncio.Future] = batch,
                           deadline: asyncio.TimerHandle = deadline) -> None:
                    deadline.cancel()
                    _settle(batch, None if f.cancelled() or f.exception() is None else f.exception())

                asyncio.ensure_future(self._wait_applied(index)).add_done_callback(settle)
        finally:
            self._task = None


def _settle(batch: list[asyncio.Future], exc: BaseException | None) -> None:
    for fut in batch:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)
