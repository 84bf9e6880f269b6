"""The server makes no garbage cycles per request and keeps its state out of the collector's way.

A unary call's stream and handler refer to each other while the call runs; if that cycle
outlived the call, every request would leave garbage only a cyclic collection frees (that was
~13% of the server's CPU under put load). History entries and key indexes hold no cycles and
are not tracked, so full collections do not walk the store.
"""
from __future__ import annotations

import asyncio
import gc

import grpc
import pytest

import kvstore
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.h2.stream import Stream
from kvstore.mvcc import MVCCStore
from kvstore.mvcc.core import KeyIndex
from kvstore.server import gc_policy
from kvstore.server.services import all_services
from kvstore.server.transport.h2.grpc_call import GrpcCall
from kvstore.server.transport.h2.server import H2Server


def _live(cls) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is cls)


async def test_unary_calls_leave_no_cycles_behind():
    store = await kvstore.Store.open("memory")
    server = H2Server(all_services(store), 1 << 20)
    server.listen("127.0.0.1", 0)
    await server.start()
    port = server._servers[0].sockets[0].getsockname()[1]
    gc.collect()
    gc.disable()  # whatever a cycle keeps alive stays alive until we look
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            kv = rpc.KVStub(channel)
            for i in range(50):
                await kv.Put(pb.PutRequest(key=b"k%d" % i, value=b"v"))
                await kv.Range(pb.RangeRequest(key=b"k%d" % i))
            with pytest.raises(grpc.aio.AioRpcError):  # an error answer, too
                await kv.Range(pb.RangeRequest(key=b""))
            await asyncio.sleep(0.05)
            assert _live(GrpcCall) == 0
            assert _live(Stream) == 0
    finally:
        gc.enable()
        await server.stop(0.5)
        await store.close()


def test_store_state_is_not_tracked_by_the_collector():
    # about the compiled KeyValue/KeyIndex/History the server runs on (the pure-Python twins
    # are references for behaviour: their instances are ordinary tracked objects)
    assert KeyIndex.__module__ == "kvstore._ext.mvcc_core"
    mvcc = MVCCStore()
    for i in range(10):
        txn = mvcc.write()
        txn.put(b"k%d" % (i % 3), b"v")
        if i % 2:
            txn.put(b"x%d" % i, b"v")  # a revision of two changes: held as a tuple
        txn.end()
    gc.collect()  # a tuple of KeyValues stops being tracked at its first collection
    assert not gc.is_tracked(mvcc.history)
    assert not gc.is_tracked(mvcc.index.get(b"k0"))
    assert not gc.is_tracked(mvcc.index.get(b"k0").current())
    # a revision of several changes is held as its tuple (one change: the KeyValue itself)
    held = [changes for _, changes in mvcc.history if len(changes) > 1]
    assert len(held) == 5 and not any(gc.is_tracked(changes) for changes in held)


def test_settle_after_recovery_freezes_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        gc_policy.settle_after_recovery()
        assert gc.get_threshold()[0] == gc_policy.YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_no_collections_while_recovering():
    assert gc.isenabled()
    with gc_policy.recovering():
        assert not gc.isenabled()
    assert gc.isenabled()
