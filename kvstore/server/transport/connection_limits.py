"""Limits on client connections, whatever the transport: how long one may take to say hello,
how long it may sit idle, how many there may be; and the file descriptor limit they live in.

The soft RLIMIT_NOFILE is raised to the hard one at start, as Go programs (etcd) have theirs:
a soft limit of 1,024 would refuse clients long before the machine must.
"""
from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Descriptors kept for what is not a client connection: the log, snapshots, listeners.
RESERVED_FDS = 128


@dataclass(frozen=True)
class ConnectionLimits:
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_connections: int = 0  # 0: the file descriptor limit, less RESERVED_FDS

    def resolved_max(self) -> int:
        if self.max_connections:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return max(soft - RESERVED_FDS, 16)


def raise_fd_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard one; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the file descriptor limit from %d to %d: %s", soft, target, e)
    return soft
