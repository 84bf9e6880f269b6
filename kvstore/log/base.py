"""The replicated-log interface every backend implements (kine's driver pattern).

A log is an ordered sequence of opaque entries, numbered from 1. ``append`` returns only once
the batch is durable (for a durable backend); replay yields entries after an index. A snapshot
is the applied state at some index: once saved, entries up to that index may be dropped.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import AsyncIterator, Iterator


class Log(ABC):
    @abstractmethod
    async def append(self, entries: list[bytes]) -> int:
        """Appends entries in order as one durable batch; returns the index of the last one."""

    @abstractmethod
    def replay(self, after: int) -> Iterator[tuple[int, bytes]]:
        """Entries with index > ``after``, in order."""

    @property
    @abstractmethod
    def last_index(self) -> int:
        """Index of the newest entry (0 when the log has never held one)."""

    @abstractmethod
    async def save_snapshot(self, index: int, parts: AsyncIterator[bytes]) -> None:
        """Stores the state as of ``index`` (the concatenation of ``parts``, produced while
        being stored: a large state never sits whole in memory) and drops the entries it
        covers. If ``parts`` raises, nothing is stored and the exception propagates."""

    @abstractmethod
    def load_snapshot(self) -> tuple[int, bytes] | None:
        """The newest snapshot as (index, data), or None."""

    @abstractmethod
    def get_meta(self, key: str) -> bytes | None:
        """Small durable facts about this member (ids, term)."""

    @abstractmethod
    def put_meta(self, key: str, value: bytes) -> None:
        ...

    def size_bytes(self) -> int:
        """Bytes the log occupies on its medium (0 for memory)."""
        return 0

    @property
    def durable(self) -> bool:
        return False

    async def close(self) -> None:
        pass
