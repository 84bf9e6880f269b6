"""lease-keepalive: LeaseKeepAlive round trips (etcd benchmark's lease-keepalive). Each
connection grants a lease and opens a keep-alive stream; a request is one renewal on it, its
answer the stream's next response (they come in the order asked)."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections import deque

from ...api import rpc_pb2 as pb
from ...client import GrpcError
from ...client.lease_keep_alive import LeaseKeepAliveStream
from ...client.status import CODE_NAMES
from ..argtypes import positive_int
from ..scenario import Context, Outcome, Scenario

LABEL = "lease-keepalive"
NOT_FOUND = CODE_NAMES.index("NOT_FOUND")


class _Renewals:
    """One keep-alive stream and the renewals waiting for their responses, in order."""

    def __init__(self, stream: LeaseKeepAliveStream, lease_id: int):
        self.stream = stream
        self.lease_id = lease_id
        self.waiting: deque[asyncio.Future[pb.LeaseKeepAliveResponse]] = deque()
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        try:
            async for response in self.stream:
                if self.waiting:
                    fut = self.waiting.popleft()
                    if not fut.done():
                        fut.set_result(response)
        except GrpcError as e:
            while self.waiting:
                fut = self.waiting.popleft()
                if not fut.done():
                    fut.set_exception(e)

    async def renew(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        await self.stream.keep_alive(self.lease_id)
        response = await fut
        if response.TTL <= 0:
            raise GrpcError(NOT_FOUND, "etcdserver: requested lease not found")


class LeaseKeepAlive(Scenario):
    name = "lease-keepalive"
    help = "LeaseKeepAlive round trips on one lease per connection (etcd benchmark lease-keepalive)"

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.renewals: list[_Renewals] = []

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lease-ttl", type=positive_int, default=60,
                            help="seconds: the TTL the leases are granted with (default 60)")

    async def start(self, ctx: Context) -> None:
        for client in ctx.clients:
            granted = await client.lease_grant(pb.LeaseGrantRequest(TTL=self.options.lease_ttl),
                                               timeout=ctx.timeout)
            renewals = _Renewals(client.lease_keep_alive(), granted.ID)
            renewals.reader = asyncio.ensure_future(renewals.read())
            self.renewals.append(renewals)

    def request(self, ctx: Context, seq: int) -> Outcome:
        return LABEL, self.renewals[seq % len(self.renewals)].renew()

    async def stop(self, ctx: Context) -> None:
        for renewals, client in zip(self.renewals, ctx.clients):
            renewals.stream.close()
            if renewals.reader is not None:
                with contextlib.suppress(asyncio.CancelledError, GrpcError):
                    await renewals.reader
            with contextlib.suppress(GrpcError):
                await client.lease_revoke(pb.LeaseRevokeRequest(ID=renewals.lease_id), timeout=5)
