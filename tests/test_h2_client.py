"""kvstore's HTTP/2 client connection (kvstore.h2.client) against the server's, in memory:
two fake transports hand each side's written bytes to the other's data_received, as
python-hyper h2's tests do. The server end is the real one: gRPC calls on a Store on the
memory log, through the real services."""
from __future__ import annotations

import asyncio
import struct

import pytest

import kvstore
from h2client import MemoryTransport
from kvstore.api import rpc_pb2 as pb
from kvstore.h2 import frames as f
from kvstore.h2.client import H2ClientConnection
from kvstore.h2.connection import H2Connection
from kvstore.server.services import all_services
from kvstore.server.services.interceptor import CallInterceptor
from kvstore.server.transport.h2.server import H2Server

pytestmark = pytest.mark.inprocess

_PREFIX = struct.Struct(">BL")  # gRPC message prefix: compressed flag, length


def wire(client: H2Connection, server: H2Connection) -> tuple[MemoryTransport, MemoryTransport]:
    to_server, to_client = MemoryTransport(), MemoryTransport()
    to_server.peer, to_client.peer = server, client
    server.connection_made(to_client)  # the server writes to the client, and back
    client.connection_made(to_server)
    return to_server, to_client


class Response:
    """A ResponseHandler that keeps what it is given; ``done`` when the stream ends."""

    def __init__(self) -> None:
        self.head: dict[bytes, bytes] = {}
        self.trailers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def headers(self, headers, end_stream: bool) -> None:
        if not self.head and not end_stream:
            self.head = dict(headers)
        else:
            self.trailers = dict(headers)

    def data(self, payload: bytes) -> None:
        self.body += payload

    def end_of_stream(self) -> None:
        self.done.set_result(True)

    def cancel(self) -> None:
        self.done.set_result(False)

    def messages(self) -> list[bytes]:
        out, pos = [], 0
        while pos < len(self.body):
            _, n = _PREFIX.unpack_from(self.body, pos)
            out.append(bytes(self.body[pos + 5:pos + 5 + n]))
            pos += 5 + n
        return out


async def unary(client: H2ClientConnection, path: bytes, request) -> Response:
    response = Response()
    stream = client.open_stream([
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
        (b":authority", b"memory"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")], response)
    body = request.SerializeToString()
    client.send_data(stream, _PREFIX.pack(0, len(body)) + body, end_stream=True)
    assert await asyncio.wait_for(response.done, 5), "the stream was reset"
    return response


@pytest.fixture
async def connected():
    store = await kvstore.Store.open("memory")
    server = H2Server(all_services(store), 1 << 21, intercept=CallInterceptor(store))
    server_conn = server._protocol()
    client = H2ClientConnection()
    to_server, to_client = wire(client, server_conn)
    yield client, server_conn, store
    await store.close()


async def test_client_sends_the_preface_then_settings(connected):
    client, server_conn, _ = connected
    await asyncio.sleep(0)  # writes go out at the end of the loop's turn
    sent = client.transport.written[0]
    assert sent.startswith(f.PREFACE)
    assert sent[len(f.PREFACE) + 3] == f.SETTINGS
    assert server_conn._preface_seen


async def test_unary_put_then_range(connected):
    client, server_conn, store = connected
    put = await unary(client, b"/etcdserverpb.KV/Put", pb.PutRequest(key=b"k", value=b"v1"))
    assert put.head[b":status"] == b"200"
    assert put.head[b"content-type"] == b"application/grpc"
    assert put.trailers[b"grpc-status"] == b"0"
    [message] = put.messages()
    revision = pb.PutResponse.FromString(message).header.revision
    assert revision == store.mvcc.current_rev

    got = await unary(client, b"/etcdserverpb.KV/Range", pb.RangeRequest(key=b"k"))
    assert got.trailers[b"grpc-status"] == b"0"
    [message] = got.messages()
    kvs = pb.RangeResponse.FromString(message).kvs
    assert [(kv.key, kv.value, kv.mod_revision) for kv in kvs] == [(b"k", b"v1", revision)]
    # the streams are over on both sides, the client's ids odd and rising
    assert not client.streams and not server_conn.streams
    assert client._next_stream_id == 5


async def test_calls_on_one_connection_in_parallel(connected):
    client, _, _ = connected
    puts = [unary(client, b"/etcdserverpb.KV/Put", pb.PutRequest(key=b"p%d" % i, value=b"x"))
            for i in range(20)]
    responses = await asyncio.gather(*puts)
    assert all(r.trailers[b"grpc-status"] == b"0" for r in responses)
    revisions = sorted(pb.PutResponse.FromString(r.messages()[0]).header.revision
                       for r in responses)
    assert len(set(revisions)) == 20


async def test_an_error_status_comes_in_the_trailers(connected):
    client, _, _ = connected
    r = await unary(client, b"/etcdserverpb.KV/Put", pb.PutRequest(key=b"", value=b"v"))
    status = {**r.head, **r.trailers}  # trailers-only or after headers: either is gRPC's way
    assert status[b"grpc-status"] == b"3"  # INVALID_ARGUMENT
    assert status[b"grpc-message"] == b"etcdserver: key is not provided"
    assert r.messages() == []


async def test_messages_larger_than_a_frame_arrive_whole(connected):
    client, _, _ = connected
    value = bytes(range(256)) * 4096  # 1 MiB: with its prefix, more than one frame either way
    await unary(client, b"/etcdserverpb.KV/Put", pb.PutRequest(key=b"big", value=value))
    got = await unary(client, b"/etcdserverpb.KV/Range", pb.RangeRequest(key=b"big"))
    assert pb.RangeResponse.FromString(got.messages()[0]).kvs[0].value == value


async def test_headers_on_a_stream_the_client_never_opened_end_the_connection(connected):
    client, _, _ = connected
    await asyncio.sleep(0)
    client.data_received(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 7, b"\x88"))
    await asyncio.sleep(0)
    goaway = client.transport.written[-1]
    assert goaway[3] == f.GOAWAY and struct.unpack(">L", goaway[13:17])[0] == f.PROTOCOL_ERROR


async def test_a_request_sent_before_the_servers_settings_waits_for_its_window(connected):
    _, _, store = connected
    server = H2Server(all_services(store), 1 << 21)
    client = H2ClientConnection()
    wire(client, server._protocol())
    # Nothing has been exchanged yet: the client knows only the default 65,535-byte windows
    # and 16 KiB frames, so most of this request waits for the server's SETTINGS.
    value = b"w" * 200_000
    response = Response()
    stream = client.open_stream([
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/etcdserverpb.KV/Put"),
        (b":authority", b"memory"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")], response)
    body = pb.PutRequest(key=b"held", value=value).SerializeToString()
    assert not client.send_data(stream, _PREFIX.pack(0, len(body)) + body, end_stream=True)
    assert await asyncio.wait_for(response.done, 5)
    assert response.trailers[b"grpc-status"] == b"0"
    assert store.range(pb.RangeRequest(key=b"held")).kvs[0].value == value
