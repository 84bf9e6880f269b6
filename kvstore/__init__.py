"""kvstore: an etcd-v3-compatible control-plane key-value store.

Embedded use::

    import asyncio, kvstore
    from kvstore.api import rpc_pb2 as pb

    async def main():
        store = await kvstore.Store.open("memory")
        await store.put(pb.PutRequest(key=b"a", value=b"1"))
        print(store.range(pb.RangeRequest(key=b"a")).kvs)
        await store.close()
"""
from .store import Store

__all__ = ["Store"]
