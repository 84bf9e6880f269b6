"""The lessor: lease deadlines, keep-alives and expiry (etcd's lessor, minus what the log does).

Which leases exist, with which TTLs and keys, is deterministic state (mvcc/lease.py), changed
only by applying log entries. Deadlines are not: they live on the clock of the one member that
owns expiry, the leader of the current term (a LEADER entry in the log names it). When that
member's clock passes a deadline it proposes a LEASE_EXPIRE entry carrying its term; apply
honours it only while the term is current, so a deposed leader cannot expire a lease its
successor renewed. A new leader gives every lease its full TTL plus an extension, as etcd's
lessor.Promote does after an election.

Members that are not the leader forward keep-alives and time-to-live questions to it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .. import errors
from ..mvcc.lease import Lease, LeaseTable
from ..tasks import cancelled
from . import entry

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 0.5  # etcd checks for expired leases every 500 ms
# What a new leader adds to every lease's TTL (etcd: lessor.Promote(election timeout), 1 s by
# default).
PROMOTE_EXTENSION = 1.0


class LeaderLink(Protocol):
    """How a member that is not the leader asks the leader (JetStream: NATS request-reply)."""

    async def keepalive(self, lease_id: int) -> int:
        """The TTL the leader renewed the lease to (0: unknown or expired)."""

    async def time_to_live(self, lease_id: int) -> int:
        """Seconds left on the leader's clock (-1: unknown)."""


class Lessor:
    def __init__(self, leases: Callable[[], LeaseTable],
                 propose: Callable[[int, Any], Awaitable[Any]]):
        self._leases = leases  # the current lease table (a snapshot install replaces it)
        self._propose = propose
        self.is_leader = False
        self.term = 0
        self.link: LeaderLink | None = None  # None while no leader is known
        self._expiring: set[int] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._expire_loop(), name="lessor")

    async def stop(self) -> None:
        await cancelled(self._task)

    # -- leadership (applied from LEADER entries) ------------------------------------------------

    def promote(self, term: int) -> None:
        self.is_leader, self.term = True, term
        deadline = time.monotonic() + PROMOTE_EXTENSION
        for lease in self._leases().leases.values():
            lease.expiry = deadline + lease.ttl
        logger.info("lease expiry is this member's from term %d", term)

    def demote(self, term: int) -> None:
        was_leader = self.is_leader
        self.is_leader, self.term = False, term
        for lease in self._leases().leases.values():
            lease.expiry = None
        if was_leader:
            logger.info("lease expiry went to another member in term %d", term)

    def granted(self, lease: Lease) -> None:
        """Apply observer: a lease was granted (on every member; the leader starts its clock)."""
        if self.is_leader:
            lease.expiry = time.monotonic() + lease.ttl

    # -- client calls --------------------------------------------------------------------------

    async def keepalive(self, lease_id: int) -> int:
        """Renews a lease to its full TTL; the TTL, 0 when it is unknown or already expired."""
        if not self.is_leader:
            return await self._leader().keepalive(lease_id)
        return self.renew(lease_id)

    def renew(self, lease_id: int) -> int:
        lease = self._leases().get(lease_id)
        now = time.monotonic()
        if lease is None or (lease.expiry is not None and lease.expiry <= now):
            return 0
        lease.expiry = now + lease.ttl
        return lease.ttl

    async def time_to_live(self, lease_id: int) -> int:
        """Seconds left on the leader's clock; -1 for an unknown lease."""
        if not self.is_leader:
            if lease_id not in self._leases():
                return -1
            return await self._leader().time_to_live(lease_id)
        return self.remaining(lease_id)

    def remaining(self, lease_id: int) -> int:
        lease = self._leases().get(lease_id)
        return -1 if lease is None else lease.remaining(time.monotonic())

    def _leader(self) -> LeaderLink:
        if self.link is None:
            raise errors.NoLeader()
        return self.link

    # -- expiry --------------------------------------------------------------------------------

    async def _expire_loop(self) -> None:
        """Proposes an expiry for every lease past its deadline (decided here, on the clock;
        the expiry itself is an ordinary log entry)."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            if not self.is_leader:
                continue
            now = time.monotonic()
            for lease in list(self._leases().leases.values()):
                if lease.expiry is not None and lease.expiry <= now and lease.id not in self._expiring:
                    self._expiring.add(lease.id)
                    asyncio.get_running_loop().create_task(self._expire(lease.id, self.term))

    async def _expire(self, lease_id: int, term: int) -> None:
        try:
            await self._propose(entry.LEASE_EXPIRE, entry.LeaseExpire(lease_id, term))
        except errors.EtcdError:
            pass  # revoked meanwhile, no longer the leader's term, or the member is stopping
        finally:
            self._expiring.discard(lease_id)
