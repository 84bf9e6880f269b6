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
