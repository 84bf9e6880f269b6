"""Leases (etcd's lessor): which keys each lease holds, granted TTLs, expiry deadlines.

The deterministic part (grant, revoke, attach/detach keys) changes only when log entries are
applied. Deadlines are not part of it: the Store sets and checks them on the monotonic clock,
and proposes a revoke through the log when one passes, so apply never reads a clock.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from .. import errors
from .core import KeyValue

MAX_TTL = 9_000_000_000  # etcd's MaxLeaseTTL, seconds
# etcd: ceil(1.5 * election timeout) with the default 1 s election timeout.
DEFAULT_MIN_TTL = 2


class Lease:
    __slots__ = ("id", "ttl", "keys", "expiry")

    def __init__(self, lease_id: int, ttl: int):
        self.id = lease_id
        self.ttl = ttl
        self.keys: set[bytes] = set()
        self.expiry: float | None = None  # monotonic deadline; None until the Store sets it

    def remaining(self, now: float) -> int:
        """Whole seconds left (truncated, like etcd's int64(Remaining().Seconds()))."""
        if self.expiry is None:
            return self.ttl
        return math.trunc(self.expiry - now)


class LeaseTable:
    def __init__(self, min_ttl: int = DEFAULT_MIN_TTL):
        self.min_ttl = min_ttl
        self.leases: dict[int, Lease] = {}

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self.leases

    def get(self, lease_id: int) -> Lease | None:
        return self.leases.get(lease_id)

    # -- applied from the log ------------------------------------------------------------------

    def grant(self, lease_id: int, ttl: int) -> Lease:
        if lease_id == 0:
            raise errors.LeaseNotFound()
        if ttl > MAX_TTL:
            raise errors.LeaseTTLTooLarge()
        if lease_id in self.leases:
            raise errors.LeaseExist()
        lease = self.leases[lease_id] = Lease(lease_id, max(ttl, self.min_ttl))
        return lease

    def remove(self, lease_id: int) -> Lease:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            raise errors.LeaseNotFound()
        return lease

    def on_commit(self, rev: int, changes: list, prevs: list) -> None:
        """Keeps each lease's key set in step with the keys' live revisions."""
        leases = self.leases
        if not leases:  # nothing to keep in step (a key naming a lease names a revoked one)
            return
        for kv, prev in zip(changes, prevs):
            old = prev.lease if prev is not None else 0
            new = 0 if kv.version == 0 else kv.lease
            if old == new:
                continue
            if old and old in leases:
                leases[old].keys.discard(kv.key)
            if new and new in leases:
                leases[new].keys.add(kv.key)

    # -- snapshot ------------------------------------------------------------------------------

    def dump(self) -> list:
        return [[lease.id, lease.ttl] for lease in self.leases.values()]

    def load(self, state: list, live_kvs: Iterable[KeyValue]) -> None:
        """Restores leases and re-attaches the live keys that name them (with no lease, none
        can: the keys are not walked)."""
        self.leases = leases = {lease_id: Lease(lease_id, ttl) for lease_id, ttl in state}
        if not leases:
            return
        for kv in live_kvs:
            if kv.lease and kv.lease in leases:
                leases[kv.lease].keys.add(kv.key)


def live_kvs(index) -> Iterator[KeyValue]:
    return (kv for kv in (ki.current() for ki in index.all()) if kv is not None)
