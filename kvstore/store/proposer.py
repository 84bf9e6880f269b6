"""Group commit: concurrent proposals share one log record (one write-ahead append and fsync on
the LMDB log, or one JetStream message).

Proposals queue while earlier records are being appended; the proposer takes everything queued
as the next record, registers its entries in the wait table under the record's first request
id, and appends it. It does not apply anything: the apply loop answers each proposer when the
record comes back from the log, in log order, after whatever other members appended before it.

A local log takes one append at a time (the queue grows meanwhile: that is the batching); a
shared log takes several in flight. An append the log refuses fails its entries' futures: on a
local log that is fatal (the disk is gone and nothing more can be acknowledged); on a shared log
the entries fail with etcd's timeout and the member goes on, the log may come back. A full
medium (LogFull) is neither: its entries fail with etcd's "database space exceeded", ``on_full``
hears of it, and the next append tries again (space may have been freed).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from .. import errors
from ..log import LogFull, SharedLog
from ..tasks import Wakeup
from . import entry
from .wait import Pending, WaitTable

logger = logging.getLogger(__name__)
# Request ids carry the member's start count in their top bits, so an entry an earlier
# incarnation appended can never be taken for one this process waits for.
REQUEST_ID_BITS = 40
# On a shared log, a write not applied this long after it was proposed gets etcd's "request
# timed out" (etcd's ReqTimeout: 5 s + 2 election timeouts); its outcome is unknown to the client.
REQUEST_TIMEOUT = 8.0


class Proposer:
    def __init__(self, wal: SharedLog, member_id: int, starts: int, waits: WaitTable,
                 on_fatal: Callable[[BaseException], None], max_request_size: int,
                 max_batch: int = 4096, on_full: Callable[[bool], None] = lambda full: None):
        self._log = wal
        self._member_id = member_id
        self._next_request_id = (starts << REQUEST_ID_BITS) + 1
        self._waits = waits  # the apply loop takes a record's entries from it when it is back
        self._on_fatal = on_fatal
        self._on_full = on_full  # (True) an append found the medium full, (False) one fit again
        self._full = False
        self._max_batch = max_batch
        self._max_bytes = wal.max_record_bytes - entry.HEADER_SIZE
        # the largest request (its message) that fits in a record as an entry
        self._max_request_size = min(max_request_size, self._max_bytes - entry.ENTRY_HEAD_SIZE)
        self._queue: list[tuple[bytes, Pending]] = []
        self._queued_bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work = Wakeup()  # proposals queued, or an append finished
        self._in_flight = 0
        self._task: asyncio.Task | None = None
        self._failed: BaseException | None = None
        self._closing = False
        self.batches = 0  # log appends made (each one fsync on a durable log)
        self.entries = 0  # entries appended
        self.failed = 0  # entries answered with the log's error (etcd_server_proposals_failed_total)

    @property
    def healthy(self) -> bool:
        return self._failed is None and not self._closing

    def start(self) -> None:
        # The loop is looked up once: asyncio.get_running_loop() costs a getpid() system call
        # on Python 3.11, which would be one per request here.
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="proposer")

    def propose(self, kind: int, request: Any) -> asyncio.Future:
        """Queues an entry; the future gets apply's response (or its error) once the entry is
        durable in the log and applied here."""
        if self._failed is not None or self._closing:
            raise errors.Stopped()
        body = request.SerializeToString()
        if len(body) > self._max_request_size:
            raise errors.RequestTooLarge()
        data = entry.encode_entry(kind, body)
        assert self._loop is not None  # start() comes first
        fut = self._loop.create_future()
        self._queue.append((data, (kind, request, fut)))
        self._queued_bytes += len(data)
        self._work.set()
        return fut

    def queued(self) -> int:
        return len(self._queue)

    def _take_batch(self) -> list[tuple[bytes, Pending]]:
        """What is queued, up to max_batch entries and the log's record size."""
        queue = self._queue
        if len(queue) <= self._max_batch and self._queued_bytes <= self._max_bytes:
            batch, self._queue, self._queued_bytes = queue, [], 0
            return batch
        n = size = 0
        while n < len(queue) and n < self._max_batch and (
                n == 0 or size + len(queue[n][0]) <= self._max_bytes):
            size += len(queue[n][0])
            n += 1
        batch = queue[:n]
        del queue[:n]
        self._queued_bytes -= size
        return batch

    async def _run(self) -> None:
        max_in_flight = self._log.max_in_flight
        while True:
            if self._queue and self._in_flight < max_in_flight:
                self._append(self._take_batch())
            elif self._closing and not self._queue and not self._in_flight:
                return
            else:
                await self._work.wait()  # for work, or for an append to finish (the queue grows)

    def _append(self, batch: list[tuple[bytes, Pending]]) -> None:
        first = self._next_request_id
        self._next_request_id += len(batch)
        record = entry.encode_record(self._member_id, first, [b[0] for b in batch])
        deadline = None
        if not self._log.local:  # etcd's request timeout: appended, but never back from the log
            assert self._loop is not None  # start() comes first
            deadline = self._loop.call_later(REQUEST_TIMEOUT, self._timed_out, first)
        self._waits.register(first, [b[1] for b in batch], deadline)
        self._in_flight += 1
        appended = self._log.append(record, f"{self._member_id:x}-{first:x}")
        appended.add_done_callback(lambda fut: self._appended(fut, first))
        self.batches += 1
        self.entries += len(batch)

    def _timed_out(self, first: int) -> None:
        self.failed += len(self._waits.fail(first, errors.Timeout))

    def _appended(self, fut: asyncio.Future, first: int) -> None:
        self._in_flight -= 1
        self._work.set()
        exc = errors.Stopped() if fut.cancelled() else fut.exception()
        if exc is None:
            if not self._log.local:
                self._waits.appended(first, fut.result())
            if self._full:
                self._full = False
                self._on_full(False)
        elif isinstance(exc, LogFull):
            self.failed += len(self._waits.fail(first, errors.NoSpace))
            if not self._full:
                self._full = True
                logger.warning("%s; writes fail until space is freed", exc)
                self._on_full(True)
        elif self._log.local:
            self._fail(exc, self._waits.take(first) or [])
        elif failed := self._waits.fail(first, errors.Timeout):
            self.failed += len(failed)
            logger.warning("log append failed: %r", exc)

    def _fail(self, exc: BaseException, pending: list[Pending]) -> None:
        if self._failed is None:
            logger.error("log append failed; refusing further writes: %r", exc)
            self._on_fatal(exc)
        self.refuse(exc, pending)

    def refuse(self, exc: BaseException, pending: Iterable[Pending] = ()) -> None:
        """The member stops: no more proposals; what is queued fails."""
        if self._failed is None:
            self._failed = exc
        for _, _, fut in [*pending, *(b[1] for b in self._queue)]:
            if not fut.done():
                fut.set_exception(errors.Stopped())
                self.failed += 1
        self._queue.clear()

    async def close(self) -> None:
        """Hands what is queued to the log, then stops."""
        self._closing = True
        self._work.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
