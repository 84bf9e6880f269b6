from __future__ import annotations

from ...api import rpc_pb2 as pb


class KVService:
    service_name = "etcdserverpb.KV"

    def __init__(self, store):
        self.store = store

    # A unary method returns its response, or an awaitable of it (the transports take both);
    # a response may be a message or its bytes, already serialized.
    def Range(self, request: pb.RangeRequest) -> bytes:
        return self.store.range_encoded(request)

    async def RangeStream(self, request: pb.RangeRequest):
        chunks = self.store.range_stream(request)  # request errors first
        await self.store.linearizable(request.serializable)
        for response in chunks:
            yield response

    # Writes hand back the store's future (no coroutine in between).
    def Put(self, request: pb.PutRequest):
        return self.store.put_encoded(request)

    def DeleteRange(self, request: pb.DeleteRangeRequest):
        return self.store.delete_range_encoded(request)

    def Txn(self, request: pb.TxnRequest):
        return self.store.txn_encoded(request)

    def Compact(self, request: pb.CompactionRequest):
        return self.store.compact(request)
