"""Is an endpoint still there? Asked when calls fail UNAVAILABLE: a connection lost or refused.

A new TCP connection to each endpoint is the question: refused (or not accepted within
PROBE_TIMEOUT) means the server is gone, and the run ends early with what it measured. One
probe at a time; callers that hit UNAVAILABLE meanwhile share its answer.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..client.connection import split_target

PROBE_TIMEOUT = 2.0
PROBE_INTERVAL = 0.2  # at most this often, however many calls fail


class Liveness:
    def __init__(self, endpoints: list[str], on_lost: Callable[[str], None]):
        self._endpoints = endpoints
        self._on_lost = on_lost
        self._probe: asyncio.Future[None] | None = None
        self._probed_at = 0.0
        self.lost: str | None = None  # the first endpoint found gone

    def unavailable(self) -> asyncio.Future[None]:
        """A call failed UNAVAILABLE: the probe that will tell (await it to wait for it)."""
        probe = self._probe
        if probe is None or (probe.done() and time.monotonic() - self._probed_at > PROBE_INTERVAL):
            self._probed_at = time.monotonic()
            probe = self._probe = asyncio.ensure_future(self._check())
        return asyncio.shield(probe)

    async def _check(self) -> None:
        for endpoint in self._endpoints:
            if not await reachable(endpoint):
                if self.lost is None:
                    self.lost = endpoint
                    self._on_lost(endpoint)
                return


async def reachable(endpoint: str) -> bool:
    host, port = split_target(endpoint)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
