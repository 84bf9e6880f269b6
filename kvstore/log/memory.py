"""An in-memory log: for tests and benchmarks; nothing survives the process."""
from __future__ import annotations

import asyncio

from .local import LocalLog


class MemoryLog(LocalLog):
    def __init__(self) -> None:
        super().__init__()
        self._records: list[bytes] = []
        self._first = 1  # index of _records[0]

    def append(self, record: bytes, record_id: str = "") -> asyncio.Future[int]:
        self._records.append(record)
        last = self._first + len(self._records) - 1
        self._made_durable(last)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(last)
        return fut

    def first_index(self) -> int:
        return self._first

    def read(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        offset = start - self._first
        return list(enumerate(self._records[offset:offset + limit], start))

    async def trim(self, through: int) -> None:
        drop = min(through - self._first + 1, len(self._records))
        if drop > 0:
            del self._records[:drop]
            self._first += drop

    async def close(self) -> None:
        pass
