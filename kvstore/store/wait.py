"""The wait table (etcd's pkg/wait): this member's proposals waiting for their record to come
back from the log, keyed by the record's first request id.

The proposer registers a record's entries when it appends it; the apply loop takes them when the
record comes back and answers each one. What else can happen to a record is said here too: the
log refused it, it never came back in time, a snapshot installed over it means it will never be
applied here, or the member stopped. Each of these answers its proposers with an error.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .. import errors

# One pending entry: (kind, request, future of its response).
Pending = tuple[int, Any, asyncio.Future]


class WaitTable:
    def __init__(self) -> None:
        self._pending: dict[int, list[Pending]] = {}
        # a shared log's records acked (at this log index) but not yet back
        self._appended_at: dict[int, int] = {}
        self._deadlines: dict[int, asyncio.TimerHandle] = {}

    def __contains__(self, first: int) -> bool:
        return first in self._pending

    def entries(self) -> int:
        """How many entries wait (summed when asked: /metrics)."""
        return sum(map(len, self._pending.values()))

    def register(self, first: int, pending: list[Pending],
                 deadline: asyncio.TimerHandle | None = None) -> None:
        """``deadline``: a timer that fails the record if it is not back by then (it is
        cancelled when the record is taken)."""
        self._pending[first] = pending
        if deadline is not None:
            self._deadlines[first] = deadline

    def appended(self, first: int, index: int) -> None:
        """The shared log acked the record at ``index``."""
        if first in self._pending:
            self._appended_at[first] = index

    def take(self, first: int) -> list[Pending] | None:
        """The record's entries, to answer; None if nothing waits for it any more."""
        self._appended_at.pop(first, None)
        deadline = self._deadlines.pop(first, None)
        if deadline is not None:
            deadline.cancel()
        return self._pending.pop(first, None)

    def fail(self, first: int, error: type[errors.EtcdError]) -> list[Pending]:
        """Answers the record's proposers with ``error``; returns what waited."""
        pending = self.take(first) or []
        for _, _, fut in pending:
            if not fut.done():
                fut.set_exception(error())
        return pending

    def fail_through(self, index: int, error: type[errors.EtcdError]) -> None:
        """Records acked at or below ``index`` will never be applied here (a snapshot was
        installed over them)."""
        for first in [f for f, at in self._appended_at.items() if at <= index]:
            self.fail(first, error)

    def fail_all(self, error: type[errors.EtcdError]) -> None:
        for first in list(self._pending):
            self.fail(first, error)
