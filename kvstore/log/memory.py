"""An in-memory log: for tests and benchmarks; nothing survives the process."""
from __future__ import annotations

from typing import AsyncIterator, Iterator

from .base import Log


class MemoryLog(Log):
    def __init__(self):
        self._entries: list[bytes] = []
        self._first = 1  # index of _entries[0]
        self._snapshot: tuple[int, bytes] | None = None
        self._meta: dict[str, bytes] = {}

    async def append(self, entries: list[bytes]) -> int:
        self._entries.extend(entries)
        return self.last_index

    @property
    def last_index(self) -> int:
        return self._first + len(self._entries) - 1

    def replay(self, after: int) -> Iterator[tuple[int, bytes]]:
        start = max(after + 1, self._first)
        for i in range(start, self.last_index + 1):
            yield i, self._entries[i - self._first]

    async def save_snapshot(self, index: int, parts: AsyncIterator[bytes]) -> None:
        self._snapshot = (index, b"".join([part async for part in parts]))
        drop = index - self._first + 1
        if drop > 0:
            del self._entries[:drop]
            self._first = index + 1

    def load_snapshot(self) -> tuple[int, bytes] | None:
        return self._snapshot

    def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    def put_meta(self, key: str, value: bytes) -> None:
        self._meta[key] = value
