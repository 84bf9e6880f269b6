"""What every kind of kube traffic shares: the connections of its resource's endpoints, used
in turn, and clearing and reading back its objects."""
from __future__ import annotations

import argparse
from abc import ABC, abstractmethod

from ...api import rpc_pb2 as pb
from ...client import Client
from ...client.connection import Channel
from ..keys import prefix_end
from ..scenario import Context, Outcome
from .routing import Routing

RANGE = b"/etcdserverpb.KV/Range"
TXN = b"/etcdserverpb.KV/Txn"
LEASE_GRANT = b"/etcdserverpb.Lease/LeaseGrant"


class KubeStream(ABC):
    """One kind of traffic on one resource. The coordinator calls ``prepare``; each worker
    ``start``, then ``request`` for each of its requests of this kind, then ``stop``."""

    label: str  # the op label its requests count under
    resource: str  # group/resource, as --etcd-servers-overrides names it

    def __init__(self, options: argparse.Namespace, routing: Routing):
        self.options = options
        self.routing = routing
        self._clients: list[Client] = []
        self._next = 0

    def bind(self, ctx: Context) -> None:
        """This process's connections to the resource's endpoints."""
        endpoints = self.routing.endpoints_for(self.resource, ctx.endpoints)
        self._clients = [c for e in endpoints for c in ctx.clients_of(e)]
        if not self._clients:
            raise ValueError(f"no connection to an endpoint of {self.resource}")

    def client(self) -> Client:
        i = self._next
        self._next = (i + 1) % len(self._clients)
        return self._clients[i]

    def channel(self) -> Channel:
        return self.client().channel

    async def prepare(self, ctx: Context) -> None:
        self.bind(ctx)

    async def start(self, ctx: Context) -> None:
        self.bind(ctx)

    @abstractmethod
    def request(self, ctx: Context) -> Outcome:
        """Issues one request of this kind: its op label and its answer."""

    async def settle(self, ctx: Context) -> None:
        """Waits for what the last requests still owe its measurements (watch events)."""

    async def stop(self, ctx: Context) -> None:
        pass

    async def clear(self, ctx: Context, prefix: bytes) -> None:
        """Deletes every key under ``prefix`` (ours: see layout)."""
        request = pb.DeleteRangeRequest(key=prefix, range_end=prefix_end(prefix))
        await self.client().delete_range(request, timeout=ctx.timeout)

    async def revisions(self, ctx: Context, prefix: bytes) -> dict[bytes, int]:
        """key -> mod_revision of every key under ``prefix``, paged as kube lists."""
        out: dict[bytes, int] = {}
        request = pb.RangeRequest(key=prefix, range_end=prefix_end(prefix), keys_only=True, limit=10_000)
        while True:
            r = await self.client().range(request, timeout=ctx.timeout)
            out.update((kv.key, kv.mod_revision) for kv in r.kvs)
            if not r.more or not r.kvs:
                return out
            request.key = r.kvs[-1].key + b"\x00"
            request.revision = r.header.revision
