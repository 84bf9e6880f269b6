"""range: one Range of a single key a request, linearizable or serializable (etcd benchmark's
range --consistency), over a key space written before the clock."""
from __future__ import annotations

import argparse

from ...api import rpc_pb2 as pb
from ..scenario import Context, Outcome
from .keyvalue import RANGE, KeyedTemplate, KeyValueScenario


class Range(KeyValueScenario):
    name = "range"
    help = "Range requests of one key (etcd benchmark range)"
    default_key_space_size = 1000
    preload = True

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.message = KeyedTemplate(pb.RangeRequest(serializable=options.consistency == "s"), self.keys)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--consistency", choices=("l", "s"), default="l",
                            help="linearizable (l, default) or serializable (s)")

    def request(self, ctx: Context, seq: int) -> Outcome:
        message = self.message.render(self.keys.pick(seq))
        return "range", ctx.client(seq).channel.unary(RANGE, message, ctx.timeout)
