"""watch-latency: the time from a put's sending to each watcher's receiving its event (etcd
benchmark's watch-latency). Each worker puts on a key of its own, watched by --streams x
--watch-per-stream watchers; a put's value carries its number, by which each event finds
when its put was sent. Open loop at 100 puts/s unless --rate says otherwise."""
from __future__ import annotations

import argparse
import time

from ...api import rpc_pb2 as pb
from ..scenario import Context, UnaryRequest
from .keyvalue import PUT
from .watch import WatchScenario

LATENCY = "watch-latency"


class WatchLatency(WatchScenario):
    name = "watch-latency"
    help = "put-to-event latency at every watcher of a key (etcd benchmark watch-latency)"

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.key = b""
        self.sent: dict[int, list[float]] = {}  # put number -> [sent at, events still due]
        self.watchers = options.streams * options.watch_per_stream

    def default_rate(self) -> float | None:
        return 100.0  # etcd benchmark's --put-rate

    async def start(self, ctx: Context) -> None:
        self.key = self.keys.prefix + b"watch-latency-%d" % (ctx.worker or 0)
        await self.open_watchers(ctx, [self.key] * self.watchers)

    def unary(self, ctx: Context, seq: int) -> UnaryRequest:
        self.sent[seq] = [time.perf_counter(), self.watchers]
        message = pb.PutRequest(key=self.key, value=b"%d" % seq).SerializeToString()
        return "put", ctx.client(seq).channel, PUT, message

    def on_events(self, ctx: Context, response: pb.WatchResponse) -> None:
        now = time.perf_counter()
        for event in response.events:
            seq = int(event.kv.value)
            sent = self.sent.get(seq)
            if sent is None:
                continue
            ctx.recorder.measure(LATENCY, now - sent[0])
            sent[1] -= 1
            if not sent[1]:
                del self.sent[seq]
