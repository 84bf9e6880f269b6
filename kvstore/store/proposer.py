"""Group commit: concurrent proposals share one log append (one LMDB transaction, one fsync).

Proposals queue while the previous batch is being written; the writer task takes everything
queued as the next batch, appends it, then applies the entries in log order and answers each
proposer with its own result. Nothing is answered before its entry is durable and applied.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from .. import errors
from ..log import Log

log = logging.getLogger(__name__)


class Proposer:
    def __init__(self, wal: Log, apply: Callable[[int, int, Any], Any], max_batch: int = 4096,
                 after_batch: Callable[[], Any] | None = None):
        self._log = wal
        self._apply = apply  # (index, kind, request) -> response; raises EtcdError
        self._max_batch = max_batch
        self._after_batch = after_batch
        self._queue: list[tuple[bytes, int, Any, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Future | None = None  # set while the writer waits for work
        self._task: asyncio.Task | None = None
        self._failed: BaseException | None = None
        self._closing = False
        self.batches = 0  # log appends made (each one fsync on a durable log)
        self.entries = 0  # entries appended

    @property
    def healthy(self) -> bool:
        return self._failed is None and not self._closing

    def start(self) -> None:
        # The loop is looked up once: asyncio.get_running_loop() costs a getpid() system call
        # on Python 3.11, which would be one per request here.
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="proposer")

    def propose(self, entry: bytes, kind: int, request: Any) -> asyncio.Future:
        """Queues an entry; the future gets apply's response (or its error) once durable."""
        if self._failed is not None or self._closing:
            raise errors.Stopped()
        fut = self._loop.create_future()
        self._queue.append((entry, kind, request, fut))
        self._wake()
        return fut

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _run(self) -> None:
        while True:
            if not self._queue and not self._closing:
                self._wakeup = self._loop.create_future()
                await self._wakeup
                self._wakeup = None
            while self._queue:
                batch = self._queue[:self._max_batch]
                del self._queue[:self._max_batch]
                try:
                    last = await self._log.append([b[0] for b in batch])
                except BaseException as e:  # the log is gone: nothing more can be acknowledged
                    self._fail(batch, e)
                    return
                self.batches += 1
                self.entries += len(batch)
                index = last - len(batch) + 1
                for entry, kind, request, fut in batch:
                    try:
                        result = self._apply(index, kind, request)
                    except errors.EtcdError as e:
                        if not fut.done():
                            fut.set_exception(e)
                    except Exception as e:  # a bug in apply: answer, log, keep serving
                        log.exception("apply of entry %d failed", index)
                        if not fut.done():
                            fut.set_exception(e)
                    else:
                        if not fut.done():
                            fut.set_result(result)
                    index += 1
                if self._after_batch is not None:
                    await self._after_batch()
            if self._closing:
                return

    def _fail(self, batch, exc: BaseException) -> None:
        self._failed = exc
        log.error("log append failed; refusing further writes: %r", exc)
        for *_, fut in batch + self._queue:
            if not fut.done():
                fut.set_exception(errors.Stopped())
        self._queue.clear()

    async def close(self) -> None:
        """Finishes what is queued, then stops."""
        self._closing = True
        self._wake()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
