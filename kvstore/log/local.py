"""What the single-member logs (memory, LMDB) share: following what they hold.

One process is the only writer, so the log knows when a record is durable without asking
anyone: an append wakes the followers, which read the records back from the log itself (a
follower that starts late, or falls behind, reads the same way).
"""
from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from .base import Trimmed

FOLLOW_BATCH = 1024  # records handed to a follower at a time


class LocalLog(ABC):
    local = True
    max_in_flight = 1
    max_record_bytes = 1 << 31

    name = "memory"  # for messages: where the records are

    def __init__(self) -> None:
        self._durable_last = 0  # newest record that is durable (what followers may see)
        # One future per waiting follower, not one shared behind asyncio.shield: the shield
        # costs every record an extra turn of the event loop before its follower runs.
        self._waiting: list[asyncio.Future] = []
        self._failure: BaseException | None = None  # the log can make nothing more durable

    # What a backend provides.

    @abstractmethod
    def first_index(self) -> int:
        """The oldest record kept (last + 1 when there is none)."""

    @abstractmethod
    def read(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` records from ``start`` on."""

    # The shared part.

    def held(self) -> tuple[int, int]:
        """(first, last) index of the records held; first > last when there are none."""
        return self.first_index(), self._durable_last

    def _made_durable(self, last: int) -> None:
        self._durable_last = last
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            for fut in waiting:
                if not fut.done():  # a follower cancelled meanwhile
                    fut.set_result(None)

    def _broken(self, exc: BaseException) -> None:
        """Nothing more will become durable: followers get ``exc`` (the member stops)."""
        self._failure = exc
        self._made_durable(self._durable_last)

    async def follow(self, after: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        next_index = after + 1
        loop = asyncio.get_running_loop()
        while True:
            if self._failure is not None:
                raise self._failure
            if next_index > self._durable_last:
                fut = loop.create_future()
                self._waiting.append(fut)
                try:
                    await fut
                except asyncio.CancelledError:
                    if fut in self._waiting:
                        self._waiting.remove(fut)
                    raise
                continue
            first = self.first_index()
            if next_index < first:
                raise Trimmed(first)
            batch = self.read(next_index, min(FOLLOW_BATCH, self._durable_last - next_index + 1))
            yield batch
            next_index = batch[-1][0] + 1

    async def read_index(self) -> int:
        return self._durable_last

    def size_bytes(self) -> int:
        return 0

    def size_in_use(self) -> int:
        return 0

    async def defragment(self) -> None:  # noqa: B027 - not abstract: nothing to do by default
        """Nothing to return on the memory log."""

    async def open(self) -> None:  # noqa: B027 - not abstract: local logs open in __init__
        pass
