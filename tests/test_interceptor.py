"""Call metadata reaches etcd's interceptor logic on both transports (client-api-version is
counted per call type, hasleader is honoured, a non-UTF-8 version is refused as etcd does)."""
from __future__ import annotations

import grpc
import pytest

import kvstore
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.server.services import all_services
from kvstore.server.services.interceptor import CallInterceptor
from kvstore.server.transport.grpcio_server import GrpcioServer
from kvstore.server.transport.h2.server import H2Server

METADATA = (("client-api-version", "3.5"), ("hasleader", "true"))


@pytest.fixture(params=["h2", "grpcio"])
async def served(request):
    store = await kvstore.Store.open("memory")
    intercept = CallInterceptor(store)
    cls = H2Server if request.param == "h2" else GrpcioServer
    server = cls(all_services(store), 1 << 20, intercept=intercept)
    port = server.listen("127.0.0.1", 0)
    await server.start()
    if port is None:  # H2Server binds at start
        port = server._servers[0].sockets[0].getsockname()[1]
    yield port, intercept, store
    await server.stop(0.5)
    await store.close()


async def test_client_api_version_is_counted_per_call_type(served):
    port, intercept, _ = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv, watch = rpc.KVStub(channel), rpc.WatchStub(channel)
        await kv.Put(pb.PutRequest(key=b"a", value=b"1"), metadata=METADATA)
        await kv.Range(pb.RangeRequest(key=b"a"), metadata=METADATA)
        await kv.Range(pb.RangeRequest(key=b"a"))  # no version: "unknown", as etcd counts it
        call = watch.Watch(metadata=METADATA)
        await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"a")))
        assert (await call.read()).created
        call.cancel()
    assert intercept.client_requests[("unary", "3.5")] == 2
    assert intercept.client_requests[("unary", "unknown")] == 1
    assert intercept.client_requests[("stream", "3.5")] == 1


async def test_hasleader_fails_with_no_leader_once_the_store_stops(served):
    port, _, store = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = rpc.KVStub(channel)
        await kv.Range(pb.RangeRequest(key=b"a"), metadata=METADATA)  # we lead: it passes
        await store.close()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await kv.Range(pb.RangeRequest(key=b"a"), metadata=METADATA)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert e.value.details() == "etcdserver: no leader"
