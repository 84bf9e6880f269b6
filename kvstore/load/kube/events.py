"""Events: created with a TTL, as kube-apiserver writes them: a create Txn whose Put carries a
lease; one lease (TTL 1 h) is reused for 60 s or 1,000 objects, never kept alive nor revoked,
so the events vanish when it expires."""
from __future__ import annotations

import argparse
import asyncio
import time

from ...api import rpc_pb2 as pb
from ..scenario import Context, Outcome
from .layout import EVENT_PREFIX, EVENTS, event_key, object_value
from .routing import Routing
from .stream import LEASE_GRANT, TXN, KubeStream
from .wire import create_compare, ld, put_op

LEASE_REUSE_S = 60.0  # kube's leaseManager: a lease serves this long...
LEASE_REUSE_OBJECTS = 1000  # ...or this many objects


class EventCreates(KubeStream):
    label = "event-create"
    resource = EVENTS

    def __init__(self, options: argparse.Namespace, routing: Routing):
        super().__init__(options, routing)
        self.value = ld(0x12, object_value(options.event_size, 3))
        self.grant = pb.LeaseGrantRequest(TTL=options.event_ttl).SerializeToString()
        self._worker = 0
        self._created = 0
        self._lease = 0
        self._lease_at = 0.0
        self._lease_uses = 0
        self._granting: asyncio.Future[None] | None = None

    async def prepare(self, ctx: Context) -> None:
        await super().prepare(ctx)
        await self.clear(ctx, EVENT_PREFIX)

    async def start(self, ctx: Context) -> None:
        await super().start(ctx)
        self._worker = ctx.worker or 0
        await self._grant(ctx)

    async def _grant(self, ctx: Context) -> None:
        r = pb.LeaseGrantResponse.FromString(await self.channel().unary(LEASE_GRANT, self.grant, ctx.timeout))
        self._lease, self._lease_at, self._lease_uses = r.ID, time.monotonic(), 0

    def _renew_lease(self, ctx: Context) -> None:
        """A new lease once the current one has served its time or its objects; requests go
        on with the current one until it is granted (measured as its own op)."""
        if self._granting is not None and not self._granting.done():
            return
        started = time.perf_counter()
        granting = self._granting = asyncio.ensure_future(self._grant(ctx))

        def granted(fut: asyncio.Future[None]) -> None:
            if fut.cancelled():
                return
            if (e := fut.exception()) is None:
                ctx.recorder.ok("lease-grant", time.perf_counter() - started)
            else:
                ctx.recorder.error("lease-grant", getattr(e, "name", type(e).__name__))
        granting.add_done_callback(granted)

    def request(self, ctx: Context) -> Outcome:
        if (self._lease_uses >= LEASE_REUSE_OBJECTS
                or time.monotonic() - self._lease_at >= LEASE_REUSE_S):
            self._renew_lease(ctx)
        self._lease_uses += 1
        key = event_key(self._worker, self._created)
        self._created += 1
        message = create_compare(key) + put_op(key, self.value, self._lease)
        return self.label, self.channel().unary(TXN, message, ctx.timeout)

    async def stop(self, ctx: Context) -> None:
        if self._granting is not None and not self._granting.done():
            self._granting.cancel()
