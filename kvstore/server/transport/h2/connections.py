"""The server's connections as a whole, under ConnectionLimits (connection_limits.py).

- A connection that has not sent its HTTP/2 preface (or a whole HTTP/1.1 request) within the
  handshake timeout is dropped: a slowloris holds a file descriptor, never a request.
- A connection with no stream open and nothing received for the idle timeout gets GOAWAY, as
  grpc-go's MaxConnectionIdle does; gRPC clients reconnect when they next need to.
- At most ``max_connections`` at once. A new one beyond that makes room by sending GOAWAY to
  the connection idle the longest; if none is idle, the new one is closed at once.
"""
from __future__ import annotations

import asyncio
import logging

from ..connection_limits import ConnectionLimits

log = logging.getLogger(__name__)


class Connections:
    """The open connections, admitted against the limit and swept for timeouts."""

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self.max = limits.resolved_max()
        self.open: set = set()
        self._sweeper: asyncio.Task | None = None

    def admit(self, conn) -> bool:
        """Whether ``conn`` (just connected) may stay; makes room if it can."""
        if len(self.open) >= self.max:
            idle = [c for c in self.open if not c.streams and c.handshake_done]
            if not idle:
                log.warning("refusing a connection: %d open, none idle (limit %d)", len(self.open), self.max)
                return False
            oldest = min(idle, key=lambda c: c.last_activity)
            oldest.goaway()
            self.open.discard(oldest)
        self.open.add(conn)
        return True

    def closed(self, conn) -> None:
        self.open.discard(conn)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="connections")

    async def _sweep(self) -> None:
        limits = self.limits
        period = max(min(limits.handshake_timeout, limits.idle_timeout) / 4, 0.05)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for conn in list(self.open):
                if not conn.handshake_done:
                    if now - conn.opened_at > limits.handshake_timeout:
                        self.open.discard(conn)
                        conn.abort()
                elif not conn.streams and now - conn.last_activity > limits.idle_timeout:
                    self.open.discard(conn)
                    conn.goaway()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
