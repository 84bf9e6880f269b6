"""Node heartbeats: every node renews its Lease object every 10 s with kube-apiserver's
GuaranteedUpdate, If(mod_revision(key) == rev) Then(Put) Else(Range), the revision being the
one its last write (or the Else branch's read) returned."""
from __future__ import annotations

import argparse

from ...api import rpc_pb2 as pb
from ..scenario import Context, Outcome
from ..waiting import limited
from .layout import LEASE_PREFIX, LEASES, lease_key, object_value
from .routing import Routing
from .stream import TXN, KubeStream
from .wire import ld, mod_compare, mod_compare_head, put_op, range_failure

PUT = b"/etcdserverpb.KV/Put"


class LeaseRenewals(KubeStream):
    label = "lease-renew"
    resource = LEASES

    def __init__(self, options: argparse.Namespace, routing: Routing, nodes: int):
        super().__init__(options, routing)
        self.nodes = nodes
        self.value = object_value(options.lease_size, 1)
        self._keys: list[bytes] = []
        self._heads: list[bytes] = []
        self._tails: list[bytes] = []
        self._revs: list[int] = []
        self._turn = 0
        self.conflicts = 0

    async def prepare(self, ctx: Context) -> None:
        """Every node's Lease, written once (kubelet creates it at registration)."""
        await super().prepare(ctx)
        await self.clear(ctx, LEASE_PREFIX)

        def put(node: int):
            message = pb.PutRequest(key=lease_key(node), value=self.value).SerializeToString()
            return lambda: self.channel().unary(PUT, message, ctx.timeout)
        await limited(put(n) for n in range(self.nodes))

    async def start(self, ctx: Context) -> None:
        """This worker's share of the nodes, at the revisions their Leases are at now."""
        await super().start(ctx)
        revs = await self.revisions(ctx, LEASE_PREFIX)
        value = ld(0x12, self.value)
        for node in range(ctx.worker or 0, self.nodes, ctx.workers):
            key = lease_key(node)
            self._keys.append(key)
            self._heads.append(mod_compare_head(key))
            self._tails.append(put_op(key, value) + range_failure(key))
            self._revs.append(revs.get(key, 0))
        if not self._keys:
            raise ValueError(f"{self.nodes} nodes cannot be shared by {ctx.workers} workers")

    def request(self, ctx: Context) -> Outcome:
        i = self._turn
        self._turn = (i + 1) % len(self._keys)
        message = mod_compare(self._heads[i], self._revs[i]) + self._tails[i]
        return self.label, self._renew(ctx, i, self.channel().unary(TXN, message, ctx.timeout))

    async def _renew(self, ctx: Context, i: int, answer) -> None:
        r = pb.TxnResponse.FromString(await answer)
        if r.succeeded:
            self._revs[i] = r.header.revision
            return
        # someone else wrote it (kube would retry from the Else branch's read)
        kvs = r.responses[0].response_range.kvs
        self._revs[i] = kvs[0].mod_revision if kvs else 0
        ctx.recorder.count(self.label + " conflicts")
