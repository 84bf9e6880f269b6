"""Two ways a scenario waits outside the clock: many calls a bounded number at a time (writing
keys ahead of a run), and a quiet spell (the watch events the last writes still owe)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

PREPARE_IN_FLIGHT = 64  # calls in flight while writing objects ahead of the clock
QUIET_S = 0.2  # a quiet spell: nothing came for this long...
QUIET_MAX_S = 3.0  # ...or this long at most


async def limited(calls: Iterable[Callable[[], Awaitable[Any]]], in_flight: int = PREPARE_IN_FLIGHT) -> None:
    """Runs the calls, ``in_flight`` at a time."""
    pending = iter(calls)

    async def runner() -> None:
        for call in pending:  # the runners share one iterator: each call runs once
            await call()

    await asyncio.gather(*(runner() for _ in range(in_flight)))


async def quiet_spell(last_seen: Callable[[], float]) -> None:
    """Until QUIET_S passed since ``last_seen()`` (time.monotonic of the last event), or
    QUIET_MAX_S in all."""
    deadline = time.monotonic() + QUIET_MAX_S
    while time.monotonic() < deadline and time.monotonic() - last_seen() < QUIET_S:  # noqa: ASYNC110 - a quiet spell, bounded
        await asyncio.sleep(QUIET_S / 4)
