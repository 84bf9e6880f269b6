"""delete: one DeleteRange of a single key a request, over a key space written before the
clock; keys are taken in order (seq modulo the key space), each deleted once a pass."""
from __future__ import annotations

import argparse

from ...api import rpc_pb2 as pb
from ..scenario import Context, UnaryRequest
from .keyvalue import DELETE_RANGE, KeyedTemplate, KeyValueScenario


class Delete(KeyValueScenario):
    name = "delete"
    help = "DeleteRange requests of one key, over keys written first"
    default_key_space_size = 1000
    preload = True

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.message = KeyedTemplate(pb.DeleteRangeRequest(), self.keys)

    def unary(self, ctx: Context, seq: int) -> UnaryRequest:
        message = self.message.render(self.keys.key(seq % self.keys.size))
        return "delete", ctx.client(seq).channel, DELETE_RANGE, message
