"""kvstore: an etcd-v3-compatible control-plane key-value store.

Embedded use::

    import asyncio, kvstore
    from kvstore.api import rpc_pb2 as pb

    async def main():
        store = await kvstore.Store.open("memory")
        await store.put(pb.PutRequest(key=b"a", value=b"1"))
        print(store.range(pb.RangeRequest(key=b"a")).kvs)
        await store.close()

Partitioned (kube's profile: nodes, pods, leases and events each in a Store of its own, every
request routed by key)::

        parts = await kvstore.Partitions.open()
        await parts.put(pb.PutRequest(key=b"/registry/pods/ns/p", value=b"1"))  # the pods Store
        await parts.close()
"""
from .partition import Partitions
from .store import Store

__all__ = ["Partitions", "Store"]
