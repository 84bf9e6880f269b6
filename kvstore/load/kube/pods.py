"""Pod churn: create, update and delete Txns as kube-apiserver sends them, on ~4 KB pods,
with a watch on /registry/pods/ as kube-apiserver's watch cache holds one (prev_kv,
progress_notify, from the revision it started at).

Each worker churns its own pods in a cycle of five writes: one create, three updates (a pod's
status changes a few times in its life) and one delete, each conditional on the revision of
the pod's last write, as kube's are."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import deque

from ...api import rpc_pb2 as pb
from ...client import GrpcError
from ...client.watch import WatchStream
from ..keys import prefix_end
from ..scenario import Context, Outcome
from ..waiting import limited, quiet_spell
from .layout import POD_PREFIX, PODS, initial_pod_key, object_value, pod_key
from .routing import Routing
from .stream import TXN, KubeStream
from .wire import create_compare, delete_op, ld, mod_compare, mod_compare_head, put_op, range_failure

WATCH_EVENTS = "pod-watch-events"


class PodChurn(KubeStream):
    label = "pod-write"
    resource = PODS

    def __init__(self, options: argparse.Namespace, routing: Routing, pods: int, watch: bool):
        super().__init__(options, routing)
        self.pods = pods  # written before the clock
        self.watch = watch
        self.value = ld(0x12, object_value(options.pod_size, 2))
        self._idle: deque[tuple[bytes, int]] = deque()  # live pods with no write in flight
        self._created = 0
        self._turn = 0
        self._worker = 0
        self._watch: WatchStream | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.watch_error: str | None = None
        self._closing = False
        self._last_event = 0.0

    async def prepare(self, ctx: Context) -> None:
        await super().prepare(ctx)
        await self.clear(ctx, POD_PREFIX)
        await create_pods(ctx, self, [initial_pod_key(i) for i in range(self.pods)], self.value)

    async def start(self, ctx: Context) -> None:
        await super().start(ctx)
        self._worker = ctx.worker or 0
        # this worker's share of the pods written ahead, at their revisions: churned first
        revs = await self.revisions(ctx, POD_PREFIX)
        for i in range(self._worker, self.pods, ctx.workers):
            key = initial_pod_key(i)
            if key in revs:
                self._idle.append((key, revs[key]))
        if self.watch and self._worker == 0:
            await self._open_watch(ctx)

    async def _open_watch(self, ctx: Context) -> None:
        ws = self._watch = self.client().watch()
        await ws.create(POD_PREFIX, prefix_end(POD_PREFIX), prev_kv=True, progress_notify=True)
        first = await asyncio.wait_for(ws.__anext__(), 10)
        if not first.created:
            raise RuntimeError(f"the pods' watch was not created: {first}")
        self._watch_task = asyncio.ensure_future(self._watch_events(ctx, ws))

    async def _watch_events(self, ctx: Context, ws: WatchStream) -> None:
        count = ctx.recorder.count
        try:
            async for r in ws:
                if r.events:
                    self._last_event = time.monotonic()
                    count(WATCH_EVENTS, len(r.events))
                if r.canceled:
                    self.watch_error = f"the pods' watch was canceled: {r.cancel_reason}"
                    return
        except GrpcError as e:
            if not self._closing:  # stop() cancels it: that is no error
                self.watch_error = f"the pods' watch ended: {e}"

    async def settle(self, ctx: Context) -> None:
        if self._watch is None:
            return
        await quiet_spell(lambda: self._last_event)

    async def stop(self, ctx: Context) -> None:
        self._closing = True
        if self._watch is not None:
            self._watch.close()
        if self._watch_task is not None:
            with contextlib.suppress(asyncio.CancelledError, GrpcError):
                await asyncio.wait_for(self._watch_task, 2)

    def request(self, ctx: Context) -> Outcome:
        turn = self._turn
        self._turn = (turn + 1) % 5  # create, update x3, delete
        if turn == 0 or not self._idle:
            key = pod_key(self._worker, self._created)
            self._created += 1
            message = create_compare(key) + put_op(key, self.value)
            return "pod-create", self._write(ctx, key, message, keep=True)
        key, rev = self._idle.popleft()
        if turn < 4:
            message = mod_compare(mod_compare_head(key), rev) + put_op(key, self.value) + range_failure(key)
            return "pod-update", self._write(ctx, key, message, keep=True)
        message = mod_compare(mod_compare_head(key), rev) + delete_op(key)
        return "pod-delete", self._write(ctx, key, message, keep=False)

    async def _write(self, ctx: Context, key: bytes, message: bytes, keep: bool) -> None:
        r = pb.TxnResponse.FromString(await self.channel().unary(TXN, message, ctx.timeout))
        if r.succeeded:
            if keep:
                self._idle.append((key, r.header.revision))
            return
        ctx.recorder.count("pod-write conflicts")
        if r.responses and r.responses[0].response_range.kvs:  # the Else branch's read
            self._idle.append((key, r.responses[0].response_range.kvs[0].mod_revision))


async def create_pods(ctx: Context, stream: KubeStream, keys: list[bytes], value_field: bytes) -> None:
    def create(key: bytes):
        message = create_compare(key) + put_op(key, value_field)
        return lambda: stream.channel().unary(TXN, message, ctx.timeout)
    await limited(create(k) for k in keys)
