"""put: one Put a request (etcd benchmark's put)."""
from __future__ import annotations

import argparse

from ...api import rpc_pb2 as pb
from ..scenario import Context, UnaryRequest
from .keyvalue import PUT, KeyedTemplate, KeyValueScenario


class Put(KeyValueScenario):
    name = "put"
    help = "Put requests (etcd benchmark put)"

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.message = KeyedTemplate(pb.PutRequest(value=self.value), self.keys)

    def unary(self, ctx: Context, seq: int) -> UnaryRequest:
        message = self.message.render(self.keys.pick(seq))
        return "put", ctx.client(seq).channel, PUT, message
