"""put: one Put a request (etcd benchmark's put)."""
from __future__ import annotations

from ...api import rpc_pb2 as pb
from ..scenario import Context, Outcome
from .keyvalue import PUT, KeyValueScenario


class Put(KeyValueScenario):
    name = "put"
    help = "Put requests (etcd benchmark put)"

    def request(self, ctx: Context, seq: int) -> Outcome:
        message = pb.PutRequest(key=self.keys.pick(seq), value=self.value).SerializeToString()
        return "put", ctx.client(seq).channel.unary(PUT, message, ctx.timeout)
