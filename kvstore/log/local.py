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

    def __init__(self) -> None:
        self._durable_last = 0  # newest record that is durable (what followers may see)
        self._changed: asyncio.Future | None = None

    # What a backend provides.

    @abstractmethod
    def first_index(self) -> int:
        """The oldest record kept (last + 1 when there is none)."""

    @abstractmethod
    def read(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` records from ``start`` on."""

    # The shared part.

    def _made_durable(self, last: int) -> None:
        self._durable_last = last
        changed = self._changed
        if changed is not None:
            self._changed = None
            if not changed.done():
                changed.set_result(None)

    async def follow(self, after: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        next_index = after + 1
        while True:
            if next_index > self._durable_last:
                if self._changed is None:
                    self._changed = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._changed)
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

    async def open(self) -> None:  # noqa: B027 - not abstract: local logs open in __init__
        pass
