"""The apply loop: follows the log and applies every record in log order, on every member.

This is the only place state changes. A record this member appended is matched to its waiting
proposers by its first request id (etcd's pkg/wait) and its entries are applied from the
requests kept there, with no decoding; any other record is decoded. Recovery is the same loop:
after the newest snapshot, the log's records are followed from there.

An etcd error from apply is an answer (the same on every member: apply is deterministic). Any
other error means this member can no longer apply the log faithfully, and a replica that skips
an entry diverges silently: the loop stops and the member with it.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .. import errors
from ..log import DataDirCorrupt, SharedLog, Trimmed
from ..tasks import cancelled
from . import entry
from .wait import WaitTable

logger = logging.getLogger(__name__)


class StateMachine(Protocol):
    def apply_entry(self, kind: int, request: Any) -> Any:
        """Applies one entry; its response, or raises an EtcdError (the entry's answer)."""

    async def after_batch(self) -> None:
        """Between two batches of records (snapshots start here)."""

    async def install_snapshot(self, first_index: int) -> None:
        """The log was trimmed past what was applied: load a snapshot at or after
        ``first_index - 1`` (from wherever the log keeps them)."""


class ApplyLoop:
    def __init__(self, wal: SharedLog, member_id: int, waits: WaitTable, machine: StateMachine,
                 on_fatal: Callable[[BaseException], None]):
        self._log = wal
        self._member_id = member_id
        self._waits = waits
        self._machine = machine
        self._on_fatal = on_fatal
        self.applied_index = 0
        self.applied_entries = 0  # entries applied by this process (snapshots count them)
        self._applied_waiters: list[tuple[int, int, asyncio.Future]] = []
        self._waiter_seq = 0
        self._task: asyncio.Task | None = None
        self.failure: BaseException | None = None

    def start(self, after: int) -> None:
        self.applied_index = after
        self._task = asyncio.get_running_loop().create_task(self._run(), name="apply")

    def wait_applied(self, index: int) -> Awaitable[None]:
        """Done once the record at ``index`` is applied."""
        fut = asyncio.get_running_loop().create_future()
        if self.failure is not None:
            fut.set_exception(errors.Stopped())
        elif index <= self.applied_index:
            fut.set_result(None)
        else:
            self._waiter_seq += 1
            heapq.heappush(self._applied_waiters, (index, self._waiter_seq, fut))
        return fut

    async def _run(self) -> None:
        try:
            while True:
                try:
                    async for batch in self._log.follow(self.applied_index):
                        for index, record in batch:
                            self._apply_record(index, record)
                        self._notify_applied()
                        await self._machine.after_batch()
                except Trimmed as t:
                    logger.warning("%s after applying %d: installing a snapshot", t,
                                   self.applied_index)
                    await self._machine.install_snapshot(t.first_index)
                    self._notify_applied()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self.failure = e
            if not isinstance(e, DataDirCorrupt):  # that one says it all, wherever it lands
                logger.critical("apply stopped at log index %d: %r; this member stops",
                                self.applied_index + 1, e, exc_info=e)
            self._fail_waiters()
            self._on_fatal(e)

    def _apply_record(self, index: int, record: bytes) -> None:
        if index != self.applied_index + 1:  # the log's contract: no gap, no repeat
            raise errors.Corrupt(f"etcdserver: log record {index} follows {self.applied_index}")
        if not record:  # a BARRIER, the log's own: nothing to apply
            # counted, as etcd counts its empty entries: a log of reads alone is still
            # snapshotted and trimmed
            self.applied_entries += 1
            self.applied_index = index
            return
        member, first = entry.record_origin(record)
        pending = self._waits.take(first) if member == self._member_id else None
        apply = self._machine.apply_entry
        if pending is not None:
            for kind, request, fut in pending:
                try:
                    resp = apply(kind, request)
                except errors.EtcdError as e:
                    if not fut.done():
                        fut.set_exception(e)
                else:
                    if not fut.done():
                        fut.set_result(resp)
            self.applied_entries += len(pending)
        else:
            n = 0
            for kind, body in entry.record_entries(record):
                try:
                    apply(kind, entry.decode_request(kind, body))
                except errors.EtcdError:
                    pass  # its proposer (if still waiting) was answered on its own member
                n += 1
            self.applied_entries += n
        self.applied_index = index

    def set_applied(self, index: int) -> None:
        """After a snapshot is installed: the log is followed from ``index`` on."""
        self.applied_index = index

    def _notify_applied(self) -> None:
        waiters = self._applied_waiters
        while waiters and waiters[0][0] <= self.applied_index:
            fut = heapq.heappop(waiters)[2]
            if not fut.done():
                fut.set_result(None)

    def _fail_waiters(self) -> None:
        self._waits.fail_all(errors.Stopped)
        for _, _, fut in self._applied_waiters:
            if not fut.done():
                fut.set_exception(errors.Stopped())
        self._applied_waiters.clear()

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None
