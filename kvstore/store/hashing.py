"""Runs a computation over the whole state in steps, so the event loop serves between them."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from ..mvcc.backend_view import PAUSE, StateChanged
from ..mvcc.hash import run_steps

ATTEMPTS = 3  # compactions that may land during a computation before it runs in one go


async def run_in_steps(steps: Callable[[], Iterator]) -> int:
    """The result of ``steps()`` (PAUSE between steps, the result last), the event loop going
    round at each PAUSE. A compaction meanwhile starts it again; after a few, it runs without
    pausing, so nothing can change under it."""
    for _ in range(ATTEMPTS):
        result = 0
        try:
            for item in steps():
                if item is PAUSE:
                    await asyncio.sleep(0)
                else:
                    result = item
            return result
        except StateChanged:
            continue
    return run_steps(steps())
