"""Small asyncio helpers shared by the layers."""
from __future__ import annotations

import asyncio
import contextlib


async def cancelled(task: asyncio.Task | None) -> None:
    """Cancels a background task and waits until it has ended (its finally clauses ran)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Wakeup:
    """Wakes one task that waits for work. Cheaper than asyncio.Event on a hot path: the loop
    is looked up once, not at every wait (asyncio.get_running_loop() costs a getpid() system
    call on Python 3.11). A ``set()`` while nobody waits is dropped: the waiter checks for work
    before it waits."""

    __slots__ = ("_loop", "_future")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._future: asyncio.Future | None = None

    def set(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._future = self._loop.create_future()
        try:
            await self._future
        finally:
            self._future = None
