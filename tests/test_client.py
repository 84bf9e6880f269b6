"""kvstore.client: unary KV calls over kvstore's own HTTP/2.

In memory, the call layer against the real server connection (wired as tests/test_h2_client.py
does). Against real servers, kvstore and etcd each, a differential run with grpcio as the
reference: the same sequence of requests, once through grpcio and once through the client.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

import kvstore
from kvstore.api import rpc_pb2 as pb
from kvstore.client import Client, GrpcError
from kvstore.client.call import PREFIX, UnaryResponse, unary_call
from kvstore.client.connection import Channel, _Protocol, split_target
from kvstore.h2 import frames as f
from kvstore.server.services import all_services
from kvstore.server.services.interceptor import CallInterceptor
from kvstore.server.transport.h2.server import H2Server
from test_h2_client import MemoryTransport, wire

inprocess = pytest.mark.inprocess


# -- in memory ------------------------------------------------------------------------------------

@pytest.fixture
async def memory_client():
    store = await kvstore.Store.open("memory")
    server = H2Server(all_services(store), 1 << 21, intercept=CallInterceptor(store))
    protocol = _Protocol()
    wire(protocol, server._protocol())
    yield Client(Channel(protocol, "memory")), store
    await store.close()


@inprocess
async def test_put_then_range_decoded(memory_client):
    client, store = memory_client
    put = await client.put(pb.PutRequest(key=b"k", value=b"v1"))
    assert isinstance(put, pb.PutResponse)
    assert put.header.revision == store.mvcc.current_rev
    again = await client.put(pb.PutRequest(key=b"k", value=b"v2", prev_kv=True))
    assert again.header.revision == put.header.revision + 1
    assert (again.prev_kv.value, again.prev_kv.mod_revision) == (b"v1", put.header.revision)
    got = await client.range(pb.RangeRequest(key=b"k"))
    assert [(kv.key, kv.value, kv.version) for kv in got.kvs] == [(b"k", b"v2", 2)]
    assert not client.channel.protocol.streams


@inprocess
async def test_an_error_status_is_a_grpc_error(memory_client):
    client, _ = memory_client
    with pytest.raises(GrpcError) as e:
        await client.put(pb.PutRequest(key=b"", value=b"v"))
    assert (e.value.code, e.value.name) == (3, "INVALID_ARGUMENT")
    assert e.value.message == "etcdserver: key is not provided"
    assert grpc.StatusCode[e.value.name].value[0] == e.value.code


@inprocess
async def test_calls_in_parallel_and_a_large_value(memory_client):
    client, _ = memory_client
    value = bytes(range(256)) * 4096  # 1 MiB: many DATA frames each way
    puts = [client.put(pb.PutRequest(key=b"p%d" % i, value=value if i == 0 else b"x"))
            for i in range(10)]
    revisions = {r.header.revision for r in await asyncio.gather(*puts)}
    assert len(revisions) == 10
    got = await client.range(pb.RangeRequest(key=b"p0"))
    assert got.kvs[0].value == value


def _detached() -> _Protocol:
    """A client connection whose writes go nowhere: its calls wait for ever."""
    protocol = _Protocol()
    protocol.connection_made(MemoryTransport())
    return protocol


@inprocess
async def test_a_stream_reset_fails_the_call_unavailable():
    protocol = _detached()
    call = asyncio.ensure_future(unary_call(protocol, b"/etcdserverpb.KV/Range", b"m", b""))
    await asyncio.sleep(0)
    protocol.data_received(f.rst_stream(1, f.REFUSED_STREAM))
    with pytest.raises(GrpcError) as e:
        await call
    assert e.value.code == 14 and e.value.name == "UNAVAILABLE"


@inprocess
async def test_a_lost_connection_fails_the_calls_and_refuses_new_ones():
    protocol = _detached()
    calls = [asyncio.ensure_future(unary_call(protocol, b"/etcdserverpb.KV/Range", b"m", b""))
             for _ in range(3)]
    await asyncio.sleep(0)
    protocol.connection_lost(ConnectionResetError())
    for call in calls:
        with pytest.raises(GrpcError) as e:
            await call
        assert e.value.code == 14
    with pytest.raises(GrpcError) as e:
        await unary_call(protocol, b"/etcdserverpb.KV/Range", b"m", b"")
    assert e.value.code == 14
    assert protocol.lost.done()


@inprocess
async def test_a_cancelled_call_resets_its_stream():
    protocol = _detached()
    call = asyncio.ensure_future(unary_call(protocol, b"/etcdserverpb.KV/Range", b"m", b""))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0)
    assert not protocol.streams
    assert protocol.transport.written[-1].endswith(f.rst_stream(1, f.CANCEL))


def _responded(*events: Callable[[UnaryResponse], None]) -> UnaryResponse:
    response = UnaryResponse(asyncio.get_running_loop())
    for event in events:
        event(response)
    return response


OK_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]


@inprocess
async def test_a_message_split_across_frames_and_a_trailers_only_error():
    body = PREFIX.pack(0, 5) + b"hello"
    split = _responded(lambda r: r.headers(OK_HEAD, False),
                       *[(lambda r, b=body[i:i + 1]: r.data(b)) for i in range(len(body))],
                       lambda r: r.headers([(b"grpc-status", b"0")], True), UnaryResponse.end_of_stream)
    assert split.result.result() == b"hello"

    only = _responded(lambda r: r.headers(OK_HEAD + [(b"grpc-status", b"11"),
                                                     (b"grpc-message", b"50%25 %E2%9C%93")], True),
                      UnaryResponse.end_of_stream)
    error = only.result.exception()
    assert isinstance(error, GrpcError)
    assert (error.code, error.name, error.message) == (11, "OUT_OF_RANGE", "50% \u2713")


@inprocess
async def test_what_a_unary_response_may_not_be():
    def outcome(*events) -> tuple[int, str]:
        error = _responded(*events).result.exception()
        assert isinstance(error, GrpcError)
        return error.code, error.message

    def head(r: UnaryResponse) -> None:
        r.headers(OK_HEAD, False)

    def ok(r: UnaryResponse) -> None:
        r.headers([(b"grpc-status", b"0")], True)

    end = UnaryResponse.end_of_stream
    assert outcome(head, ok, end) == (13, "no response message")
    two = PREFIX.pack(0, 1) + b"a"
    assert outcome(head, lambda r: r.data(two + two), ok, end)[0] == 13
    assert outcome(head, lambda r: r.data(two[:3]), ok, end) == (13, "the stream ended inside a message")
    assert outcome(head, lambda r: r.data(PREFIX.pack(1, 1) + b"a"), ok, end)[0] == 13
    assert outcome(head, lambda r: r.data(two), end) == (13, "the stream ended without trailers")
    assert outcome(lambda r: r.headers([(b":status", b"503")], True), end)[0] == 14
    assert outcome(lambda r: r.headers([(b":status", b"200"), (b"content-type", b"text/html")],
                                       False), end)[0] == 13


@inprocess
def test_targets():
    assert split_target("127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert split_target("http://localhost:2379") == ("localhost", 2379)
    assert split_target("[::1]:2379") == ("::1", 2379)
    with pytest.raises(ValueError):
        split_target("localhost")
