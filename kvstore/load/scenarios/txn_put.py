"""txn-put: a Txn whose success branch puts --txn-ops keys (etcd benchmark's txn-put)."""
from __future__ import annotations

import argparse

from ...api import rpc_pb2 as pb
from ..argtypes import positive_int
from ..scenario import Context, UnaryRequest
from .keyvalue import TXN, KeyValueScenario


class TxnPut(KeyValueScenario):
    name = "txn-put"
    help = "Txn requests of --txn-ops puts each (etcd benchmark txn-put)"

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.ops = options.txn_ops
        if self.ops > self.keys.size:
            # a txn may not put one key twice: the ops take consecutive keys
            raise ValueError(f"--txn-ops {self.ops} needs a --key-space-size of at least {self.ops}")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--txn-ops", type=positive_int, default=1,
                            help="puts in each txn (default 1)")

    def unary(self, ctx: Context, seq: int) -> UnaryRequest:
        keys = self.keys
        first = keys.index(seq * self.ops)
        ops = [pb.RequestOp(request_put=pb.PutRequest(key=keys.key((first + j) % keys.size),
                                                      value=self.value))
               for j in range(self.ops)]
        message = pb.TxnRequest(success=ops).SerializeToString()
        return "txn-put", ctx.client(seq).channel, TXN, message
