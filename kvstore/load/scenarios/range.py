"""range: one Range of a single key a request, linearizable or serializable (etcd benchmark's
range --consistency), over a key space written before the clock; or, with --range-key, of that one
key, written by someone else (etcd benchmark's ``range KEY``: ``--range-key KEY``)."""
from __future__ import annotations

import argparse

from ...api import rpc_pb2 as pb
from ..scenario import Context, UnaryRequest
from .keyvalue import RANGE, KeyedTemplate, KeyValueScenario


class Range(KeyValueScenario):
    name = "range"
    help = "Range requests of one key (etcd benchmark range)"
    default_key_space_size = 1000
    preload = True

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        serializable = options.consistency == "s"
        self.message = KeyedTemplate(pb.RangeRequest(serializable=serializable), self.keys)
        self.one_key = None
        if options.range_key is not None:
            one = pb.RangeRequest(key=options.range_key.encode(), serializable=serializable)
            self.one_key = one.SerializeToString()
        self.preload = self.one_key is None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--consistency", choices=("l", "s"), default="l",
                            help="linearizable (l, default) or serializable (s)")
        parser.add_argument("--range-key", default=None, metavar="KEY",
                            help="read only this key, and write nothing ahead (benchmark's range KEY)")

    async def prepare(self, ctx: Context) -> None:
        if self.one_key is None:
            await super().prepare(ctx)

    def unary(self, ctx: Context, seq: int) -> UnaryRequest:
        message = self.one_key or self.message.render(self.keys.pick(seq))
        return "range", ctx.client(seq).channel, RANGE, message
