"""kvstore.client's streams and the rest of etcd's client surface: Watch, Lease (unary and the
KeepAlive stream), RangeStream and its paged fallback, MemberList and Status, several
endpoints, and Channel.call, the callback API.

In memory, the client against the real server connection (as tests/test_client.py wires it).
Against real servers, kvstore and etcd each (one of each for the module), grpcio is the
reference: the same requests through grpcio (grpc.aio, in the same event loop) and through the
client, on the same server, must get the same responses. Two Watch streams opened the same way
on one server see the same responses, watch ids included.
"""
from __future__ import annotations

import asyncio

import grpc
import pytest

import kvstore
from kvstore.api import kv_pb2, rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.client import Channel, Client, GrpcError, StreamingCall, connect
from kvstore.client.connection import _Protocol
from kvstore.client.headers import request_block
from kvstore.client.messages import PREFIX
from kvstore.client.range_stream import paged_range
from kvstore.h2 import frames as f
from kvstore.server.services import all_services
from kvstore.server.services.interceptor import CallInterceptor
from kvstore.server.transport.h2.server import H2Server
from procs import SERVER_KINDS, EtcdProcess, KvstoreProcess, free_port
from test_h2_client import MemoryTransport, wire

inprocess = pytest.mark.inprocess
WAIT = 5.0  # s: the longest any one response may take


def _prefix_end(p: bytes) -> bytes:
    return p[:-1] + bytes([p[-1] + 1])


def _merged(parts) -> pb.RangeResponse:
    out = pb.RangeResponse()
    for p in parts:
        out.MergeFrom(p)
    return out


async def _collect(aiter, n: int) -> list:
    return [await asyncio.wait_for(anext(aiter), WAIT) for _ in range(n)]


# -- in memory ------------------------------------------------------------------------------------

@pytest.fixture
async def memory_client():
    store = await kvstore.Store.open("memory")
    server = H2Server(all_services(store), 1 << 21, intercept=CallInterceptor(store))
    protocol = _Protocol()
    wire(protocol, server._protocol())
    yield Client(Channel(protocol, "memory"))
    await store.close()


@inprocess
async def test_watch_events_prev_kv_and_cancel(memory_client):
    client = memory_client
    ws = client.watch()
    await ws.create(b"w/", range_end=b"w0", prev_kv=True)
    created = await anext(ws)
    assert created.created and created.watch_id == 0
    await client.put(pb.PutRequest(key=b"w/a", value=b"1"))
    await client.put(pb.PutRequest(key=b"w/a", value=b"2"))
    await client.delete_range(pb.DeleteRangeRequest(key=b"w/a"))
    events = [e for r in await _collect(ws, 3) for e in r.events]
    put, delete = kv_pb2.Event.PUT, kv_pb2.Event.DELETE
    assert [(e.type, e.kv.value, e.prev_kv.value) for e in events] == [
        (put, b"1", b""), (put, b"2", b"1"), (delete, b"", b"2")]
    await ws.cancel(0)
    cancelled = await anext(ws)
    assert cancelled.canceled and cancelled.watch_id == 0
    ws.close()
    with pytest.raises(GrpcError) as e:
        await anext(ws)
    assert e.value.name == "CANCELLED"
    await asyncio.sleep(0)
    assert not client.channel.protocol.streams


@inprocess
async def test_lease_keep_alive_stream_and_unary_calls(memory_client):
    client = memory_client
    granted = await client.lease_grant(pb.LeaseGrantRequest(TTL=30, ID=77))
    assert (granted.ID, granted.TTL) == (77, 30)
    await client.put(pb.PutRequest(key=b"l/k", value=b"v", lease=77))
    ks = client.lease_keep_alive()
    for lease_id in (77, 77, 78):
        await ks.keep_alive(lease_id)
    answers = await _collect(ks, 3)
    assert [(r.ID, r.TTL) for r in answers] == [(77, 30), (77, 30), (78, 0)]  # 78: not found
    ks.done_writing()  # the server ends the call when we do
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(ks), WAIT)
    ttl = await client.lease_time_to_live(pb.LeaseTimeToLiveRequest(ID=77, keys=True))
    assert ttl.keys == [b"l/k"] and ttl.grantedTTL == 30
    assert [lease.ID for lease in (await client.lease_leases()).leases] == [77]
    await client.lease_revoke(pb.LeaseRevokeRequest(ID=77))
    with pytest.raises(GrpcError) as e:
        await client.lease_revoke(pb.LeaseRevokeRequest(ID=77))
    assert (e.value.name, e.value.message) == ("NOT_FOUND", "etcdserver: requested lease not found")
    assert not client.channel.protocol.streams


@inprocess
async def test_range_stream_and_the_paged_fallback_give_ranges_kvs(memory_client):
    client = memory_client
    for i in range(45):
        await client.put(pb.PutRequest(key=b"r/%02d" % i, value=b"v%d" % i))
    request = pb.RangeRequest(key=b"r/", range_end=b"r0")
    whole = await client.range(request)
    chunks = [c async for c in client.range_stream(request)]
    assert len(chunks) > 1 and _merged(chunks) == whole
    pages = [p async for p in paged_range(client.channel, request, page_size=10)]
    assert [len(p.kvs) for p in pages] == [10, 10, 10, 10, 5]
    assert [kv for p in pages for kv in p.kvs] == list(whole.kvs)
    early = client.range_stream(request)
    await anext(early)
    await early.aclose()  # stopped early: the call is cancelled, its stream gone
    assert not client.channel.protocol.streams
    limited = [p async for p in paged_range(client.channel, pb.RangeRequest(
        key=b"r/", range_end=b"r0", limit=23), page_size=10)]
    assert [len(p.kvs) for p in limited] == [10, 10, 3]


@inprocess
async def test_the_callback_api(memory_client):
    channel = memory_client.channel
    told: list[tuple[int, bytes | str]] = []
    done = asyncio.Event()

    def callback(code: int, payload: bytes | str) -> None:
        told.append((code, payload))
        if len(told) == 3:
            done.set()

    put = pb.PutRequest(key=b"cb", value=b"v").SerializeToString()
    assert channel.call(b"/etcdserverpb.KV/Put", put, callback) is not None
    assert not told  # never before call() returns
    channel.call(b"/etcdserverpb.KV/Put", pb.PutRequest(key=b"").SerializeToString(), callback)
    channel.call(b"/etcdserverpb.KV/Nothing", b"", callback)
    await asyncio.wait_for(done.wait(), WAIT)
    by_code = dict(told)
    assert pb.PutResponse.FromString(by_code[0]).header.revision == 2
    assert by_code[3] == "etcdserver: key is not provided"
    assert 12 in by_code  # UNIMPLEMENTED


def _detached() -> _Protocol:
    protocol = _Protocol()
    protocol.connection_made(MemoryTransport())
    return protocol


OK_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]


@inprocess
async def test_a_stream_gives_its_messages_then_raises_the_status():
    protocol = _detached()
    call = StreamingCall(protocol).open(request_block(b"/s", b"m"))
    call.headers(OK_HEAD, False)
    two = PREFIX.pack(0, 1) + b"a" + PREFIX.pack(0, 2) + b"bc"
    call.data(two[:4])
    call.data(two[4:])
    call.headers([(b"grpc-status", b"11"), (b"grpc-message", b"too%20far")], True)
    call.end_of_stream()
    assert [await anext(call), await anext(call)] == [b"a", b"bc"]
    with pytest.raises(GrpcError) as e:
        await anext(call)
    assert (e.value.code, e.value.message) == (11, "too far")
    with pytest.raises(GrpcError):
        await call.send(b"x")  # the call is over: sending says why


@inprocess
async def test_cancel_resets_the_stream_and_a_reader_waiting_is_told():
    protocol = _detached()
    call = StreamingCall(protocol).open(request_block(b"/s", b"m"))
    reader = asyncio.ensure_future(anext(call))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(GrpcError) as e:
        await reader
    assert e.value.name == "CANCELLED"
    await asyncio.sleep(0)
    assert not protocol.streams
    assert protocol.transport.written[-1].endswith(f.rst_stream(1, f.CANCEL))


@inprocess
async def test_a_lost_connection_or_a_reset_is_unavailable_not_cancelled():
    """Not our cancel: the server reset the stream, or the socket went (with its reason, as a
    TLS alert's, when there is one)."""
    protocol = _detached()
    reset = StreamingCall(protocol).open(request_block(b"/s", b"m"))
    protocol.data_received(f.rst_stream(1, f.CANCEL))
    with pytest.raises(GrpcError) as e:
        await anext(reset)
    assert (e.value.name, e.value.message) == (
        "UNAVAILABLE", "the stream was reset or the connection lost")
    call = StreamingCall(protocol).open(request_block(b"/s", b"m"))
    reader = asyncio.ensure_future(anext(call))
    await asyncio.sleep(0)
    protocol.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(GrpcError) as e:
        await reader
    assert (e.value.name, e.value.message) == (
        "UNAVAILABLE", "the connection was lost: [Errno 104] Connection reset by peer")


@inprocess
async def test_send_waits_for_the_window():
    protocol = _detached()  # no SETTINGS from a peer: the default 65,535-byte windows
    call = StreamingCall(protocol).open(request_block(b"/s", b"m"))
    await call.send(b"x" * 60_000)  # fits
    sending = asyncio.ensure_future(call.send(b"y" * 60_000))
    await asyncio.sleep(0.01)
    assert not sending.done()  # held back by flow control
    protocol.data_received(f.window_update(0, 100_000) + f.window_update(1, 100_000))
    await asyncio.wait_for(sending, WAIT)
    call.done_writing()
    await asyncio.sleep(0)
    assert protocol.transport.written[-1].endswith(f.frame(f.DATA, f.END_STREAM, 1))


@inprocess
async def test_a_table_size_update_due_opens_the_next_precomputed_block():
    protocol = _detached()
    protocol.data_received(f.settings({f.HEADER_TABLE_SIZE: 256}))
    block = request_block(b"/etcdserverpb.KV/Range", b"m")
    StreamingCall(protocol).open(block)
    StreamingCall(protocol).open(block)
    await asyncio.sleep(0)
    sent = b"".join(protocol.transport.written)
    first = sent.index(f.frame_header(f.HEADERS, f.END_HEADERS, 1, len(block) + 3))
    assert first > 0  # a size update (3 bytes: 256 in a 5-bit prefix) went first, once
    assert f.frame(f.HEADERS, f.END_HEADERS, 3, block) in sent


# -- against real servers, grpcio as the reference ------------------------------------------------

@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request, tmp_path_factory):
    kind = EtcdProcess if request.param == "etcd" else KvstoreProcess
    with kind(tmp_path_factory.mktemp(request.param) / "data") as s:
        yield s


@pytest.fixture
async def both(server):
    """A grpc.aio channel and a kvstore.client Client on the same server."""
    async with grpc.aio.insecure_channel(server.endpoint) as channel:
        async with await connect(server.endpoint) as client:
            yield channel, client


async def _revision(channel) -> int:
    return (await rpc.KVStub(channel).Range(pb.RangeRequest(key=b"\0"))).header.revision


async def test_watch_as_grpcio(both, request):
    channel, client = both
    kv = rpc.KVStub(channel)
    p = request.node.callspec.id.encode() + b"/w/"
    base = await _revision(channel)
    ref = rpc.WatchStub(channel).Watch()
    ws = client.watch()

    async def send(req: pb.WatchRequest) -> None:
        await ref.write(req)
        await ws.send(req)

    async def both_read(events: int = 0, until_canceled: bool = False):
        """One response from each, or as many as carry ``events`` events or end with a
        cancel (where etcd may split or join responses as its catch-up runs)."""
        out = []
        for stream in (ref, ws):
            got: list[pb.WatchResponse] = []
            while True:
                got.append(await asyncio.wait_for(
                    stream.read() if stream is ref else anext(ws), WAIT))
                if (events and sum(len(r.events) for r in got) < events) or (
                        until_canceled and not got[-1].canceled):
                    continue
                break
            out.append(got)
        return out

    await send(pb.WatchRequest(create_request=pb.WatchCreateRequest(
        key=p, range_end=_prefix_end(p), prev_kv=True)))
    g, c = await both_read()
    assert g == c and c[0].created
    for write in (lambda: kv.Put(pb.PutRequest(key=p + b"a", value=b"1")),
                  lambda: kv.Put(pb.PutRequest(key=p + b"a", value=b"2")),
                  lambda: kv.DeleteRange(pb.DeleteRangeRequest(key=p + b"a"))):
        await write()  # one at a time: a grpc.aio call starts as it is made
        g, c = await both_read()
        assert g == c and len(c[0].events) == 1
    assert c[0].events[0].prev_kv.value == b"2"  # the delete, with prev_kv

    await send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
    g, c = await both_read()
    assert g == c and c[0].header.revision == base + 3

    await send(pb.WatchRequest(create_request=pb.WatchCreateRequest(
        key=p + b"a", start_revision=base + 1, watch_id=7)))  # in the past: a catch-up
    g, c = await both_read(events=3)
    assert g == c and c[0].watch_id == 7
    await ws.cancel(7)
    await ref.write(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=7)))
    g, c = await both_read()
    assert g == c and c[0].canceled

    await kv.Compact(pb.CompactionRequest(revision=base + 2))
    await send(pb.WatchRequest(create_request=pb.WatchCreateRequest(
        key=p + b"a", start_revision=base + 1)))  # compacted: a cancel with compact_revision
    g, c = await both_read(until_canceled=True)
    assert g == c and c[-1].compact_revision == base + 2
    ws.close()
    ref.cancel()


async def test_lease_as_grpcio(both, request):
    channel, client = both
    lease, kv = rpc.LeaseStub(channel), rpc.KVStub(channel)
    n = 1000 + 10 * request.node.callspec.indices["server"]
    g_id, c_id = n + 1, n + 2  # ids chosen by the test: the responses differ only in them

    def as_g(message):
        out = type(message)()
        out.CopyFrom(message)
        if out.ID == c_id:
            out.ID = g_id
        return out

    async def both_err(call, via_client) -> tuple:
        try:
            await call
            raise AssertionError("no error from grpcio")
        except grpc.aio.AioRpcError as e:
            want = (e.code().name, e.details())
        with pytest.raises(GrpcError) as got:
            await via_client
        assert (got.value.name, got.value.message) == want
        return want

    g = await lease.LeaseGrant(pb.LeaseGrantRequest(ID=g_id, TTL=60))
    c = await client.lease_grant(pb.LeaseGrantRequest(ID=c_id, TTL=60))
    assert as_g(c) == g
    assert await both_err(lease.LeaseGrant(pb.LeaseGrantRequest(ID=g_id, TTL=60)),
                          client.lease_grant(pb.LeaseGrantRequest(ID=g_id, TTL=60))) == (
        "FAILED_PRECONDITION", "etcdserver: lease already exists")
    await kv.Put(pb.PutRequest(key=b"lease/%d" % c_id, value=b"v", lease=c_id))

    # reads back to back on one state: equal, but for a TTL that may tick down meanwhile
    for req in (pb.LeaseTimeToLiveRequest(ID=c_id, keys=True), pb.LeaseTimeToLiveRequest(ID=n + 9)):
        g, c = await lease.LeaseTimeToLive(req), await client.lease_time_to_live(req)
        assert abs(g.TTL - c.TTL) <= 1
        c.TTL = g.TTL
        assert c == g
    assert list(c_keys := (await client.lease_time_to_live(
        pb.LeaseTimeToLiveRequest(ID=c_id, keys=True))).keys) == [b"lease/%d" % c_id], c_keys
    g, c = await lease.LeaseLeases(pb.LeaseLeasesRequest()), await client.lease_leases()
    assert {x.ID for x in c.leases} == {x.ID for x in g.leases} >= {g_id, c_id}
    assert c.header == g.header

    ref = lease.LeaseKeepAlive()
    ks = client.lease_keep_alive()
    for lease_id in (c_id, c_id, n + 9):  # the last one unknown: TTL 0
        await ref.write(pb.LeaseKeepAliveRequest(ID=lease_id))
        await ks.keep_alive(lease_id)
        g, c = await asyncio.wait_for(ref.read(), WAIT), await asyncio.wait_for(anext(ks), WAIT)
        assert c == g and c.ID == lease_id
    assert c.TTL == 0
    ref.cancel()
    ks.close()

    g = await lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=g_id))
    c = await client.lease_revoke(pb.LeaseRevokeRequest(ID=c_id))  # deletes its key too
    assert c.header.revision == g.header.revision + 1
    c.header.revision = g.header.revision
    assert c == g
    assert await both_err(lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=c_id)),
                          client.lease_revoke(pb.LeaseRevokeRequest(ID=c_id))) == (
        "NOT_FOUND", "etcdserver: requested lease not found")


async def test_range_stream_as_grpcio_or_paged(both, server, request):
    channel, client = both
    kv = rpc.KVStub(channel)
    p = request.node.callspec.id.encode() + b"/r/"
    for i in range(60):
        await kv.Put(pb.PutRequest(key=p + b"%02d" % i, value=b"v%d" % i))
    req = pb.RangeRequest(key=p, range_end=_prefix_end(p))
    whole = await kv.Range(req)
    chunks = [c async for c in client.range_stream(req, page_size=25)]
    if isinstance(server, KvstoreProcess):  # RangeStream itself, as grpcio receives it
        assert chunks == [m.range_response async for m in kv.RangeStream(req)]
        assert _merged(chunks) == whole
    else:  # etcd 3.4 has none: Range pages of 25
        assert [len(c.kvs) for c in chunks] == [25, 25, 10]
        assert [kv for c in chunks for kv in c.kvs] == list(whole.kvs)

    # the view of the first chunk or page: later writes are not in it
    stream = client.range_stream(req, page_size=25)
    first = await anext(stream)
    await kv.Put(pb.PutRequest(key=p + b"59", value=b"changed"))
    await kv.Put(pb.PutRequest(key=p + b"99", value=b"new"))
    rest = [c async for c in stream]
    assert [kv for c in (first, *rest) for kv in c.kvs] == list(whole.kvs)

    for refused, message in ((dict(sort_order=pb.RangeRequest.DESCEND),
                              "RangeStream does not support custom sort orders"),
                             (dict(min_mod_revision=2), "RangeStream does not support revision filters")):
        with pytest.raises(GrpcError) as e:
            [c async for c in client.range_stream(pb.RangeRequest(key=p, range_end=b"\0", **refused))]
        assert (e.value.name, e.value.message) == ("UNIMPLEMENTED", message)


async def test_member_list_and_status_as_grpcio(both):
    channel, client = both
    g, c = await rpc.ClusterStub(channel).MemberList(pb.MemberListRequest()), await client.member_list()
    assert c == g and len(c.members) == 1 and c.members[0].clientURLs
    g, c = await rpc.MaintenanceStub(channel).Status(pb.StatusRequest()), await client.status()
    for m in (g, c):  # what may move between two calls (etcd's own bookkeeping)
        m.dbSize = m.dbSizeInUse = m.raftIndex = m.raftAppliedIndex = 0
    assert c == g and c.version and c.leader == c.header.member_id


async def test_the_callback_api_as_grpcio(both):
    channel, client = both
    kv = rpc.KVStub(channel)
    loop = asyncio.get_running_loop()

    def call(path: bytes, message: bytes) -> asyncio.Future:
        told: asyncio.Future = loop.create_future()
        client.channel.call(path, message, lambda code, payload: told.set_result((code, payload)))
        return told

    key = b"callback/k"
    code, payload = await call(b"/etcdserverpb.KV/Put",
                               pb.PutRequest(key=key, value=b"v", prev_kv=True).SerializeToString())
    assert code == 0
    put = pb.PutResponse.FromString(payload)
    got = await kv.Range(pb.RangeRequest(key=key))
    assert got.kvs[0].mod_revision == put.header.revision == got.header.revision
    code, payload = await call(b"/etcdserverpb.KV/Range", pb.RangeRequest(key=key).SerializeToString())
    assert (code, pb.RangeResponse.FromString(payload)) == (0, got)
    code, payload = await call(b"/etcdserverpb.KV/Put", pb.PutRequest(key=b"").SerializeToString())
    try:
        await kv.Put(pb.PutRequest(key=b""))
    except grpc.aio.AioRpcError as e:
        assert (code, payload) == (e.code().value[0], e.details())
    code, _ = await call(b"/etcdserverpb.KV/NoSuchMethod", b"")
    assert code == 12  # UNIMPLEMENTED


async def test_the_first_endpoint_that_accepts(server):
    dead = f"127.0.0.1:{free_port()}"
    async with await connect(f"{dead},{server.endpoint}") as client:
        assert (await client.put(pb.PutRequest(key=b"ep", value=b"v"))).header.revision
    async with await connect([dead, server.endpoint]) as client:
        assert (await client.range(pb.RangeRequest(key=b"ep"))).count == 1
    with pytest.raises(OSError):
        await connect([dead])
