"""watch: puts under watchers, and the events they deliver (etcd benchmark's watch).

Each worker opens --streams Watch streams with --watch-per-stream watchers each, watcher j on
key j of the key space; the requests are puts on keys of the same space. What it measures is
the puts, and the events the watchers receive ("watch-events", per second: events delivered).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from ...api import rpc_pb2 as pb
from ...client import GrpcError
from ...client.watch import WatchStream
from ..argtypes import positive_int
from ..scenario import Context, UnaryRequest
from ..waiting import quiet_spell
from .keyvalue import PUT, KeyValueScenario

EVENTS = "watch-events"


class WatchScenario(KeyValueScenario):
    """The watchers' streams, and a reader for each that counts what it delivers."""

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.streams: list[WatchStream] = []
        self.readers: list[asyncio.Task[None]] = []
        self.closing = False
        self.last_event = 0.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        g = parser.add_argument_group("watchers (etcd benchmark's flags)")
        g.add_argument("--streams", type=positive_int, default=10,
                       help="Watch streams per worker process (default 10)")
        g.add_argument("--watch-per-stream", type=positive_int, default=10,
                       help="watchers on each stream (default 10)")

    async def open_watchers(self, ctx: Context, keys: list[bytes]) -> None:
        """Stream s gets watchers on keys[s * per : (s + 1) * per], created one by one."""
        per = self.options.watch_per_stream
        for s in range(self.options.streams):
            ws = ctx.client(s).watch()
            self.streams.append(ws)
            for key in keys[s * per:(s + 1) * per]:
                await ws.create(key)
                created = await asyncio.wait_for(ws.__anext__(), 10)
                if not created.created:
                    raise RuntimeError(f"watch on {key!r} not created: {created}")
            self.readers.append(asyncio.ensure_future(self.read(ctx, ws)))

    async def read(self, ctx: Context, ws: WatchStream) -> None:
        try:
            async for response in ws:
                if response.events:
                    self.last_event = time.monotonic()
                    self.on_events(ctx, response)
        except GrpcError:
            if not self.closing:
                raise

    def on_events(self, ctx: Context, response: pb.WatchResponse) -> None:
        ctx.recorder.count(EVENTS, len(response.events))

    async def settle(self, ctx: Context) -> None:
        """The events of the last puts: until none came for a while (waiting.quiet_spell)."""
        await quiet_spell(lambda: self.last_event)

    async def stop(self, ctx: Context) -> None:
        self.closing = True
        for ws in self.streams:
            ws.close()
        for reader in self.readers:
            with contextlib.suppress(asyncio.CancelledError, GrpcError):
                await reader


class Watch(WatchScenario):
    name = "watch"
    help = "puts on watched keys; the events delivered (etcd benchmark watch)"
    default_key_space_size = 100

    async def start(self, ctx: Context) -> None:
        watchers = self.options.streams * self.options.watch_per_stream
        keys = self.keys
        await self.open_watchers(ctx, [keys.key(j % keys.size) for j in range(watchers)])

    def unary(self, ctx: Context, seq: int) -> UnaryRequest:
        message = pb.PutRequest(key=self.keys.pick(seq), value=self.value).SerializeToString()
        return "put", ctx.client(seq).channel, PUT, message
