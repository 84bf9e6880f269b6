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
from google.protobuf.message import Message

import kvstore
from kvstore.api import kv_pb2, rpc_pb2 as pb, rpc_pb2_grpc
from kvstore.client import Client, GrpcError, connect
from kvstore.client.call import UnaryCall, unary_call
from kvstore.client.connection import Channel, _Protocol, split_target, split_targets
from kvstore.client.headers import encode_timeout, request_block, request_headers, with_timeout
from kvstore.client.messages import PREFIX
from kvstore.h2 import frames as f
from kvstore.h2.hpack_select import Decoder
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


RANGE_BLOCK = request_block(b"/etcdserverpb.KV/Range", b"m")


def _detached() -> _Protocol:
    """A client connection whose writes go nowhere: its calls wait for ever."""
    protocol = _Protocol()
    protocol.connection_made(MemoryTransport())
    return protocol


@inprocess
async def test_a_stream_reset_fails_the_call_unavailable():
    protocol = _detached()
    call = asyncio.ensure_future(unary_call(protocol, RANGE_BLOCK, b""))
    await asyncio.sleep(0)
    protocol.data_received(f.rst_stream(1, f.REFUSED_STREAM))
    with pytest.raises(GrpcError) as e:
        await call
    assert e.value.code == 14 and e.value.name == "UNAVAILABLE"


@inprocess
async def test_a_lost_connection_fails_the_calls_and_refuses_new_ones():
    protocol = _detached()
    calls = [asyncio.ensure_future(unary_call(protocol, RANGE_BLOCK, b""))
             for _ in range(3)]
    await asyncio.sleep(0)
    protocol.connection_lost(ConnectionResetError())
    for call in calls:
        with pytest.raises(GrpcError) as e:
            await call
        assert e.value.code == 14
    with pytest.raises(GrpcError) as e:
        await unary_call(protocol, RANGE_BLOCK, b"")
    assert e.value.code == 14
    assert protocol.lost.done()


@inprocess
async def test_a_cancelled_call_resets_its_stream():
    protocol = _detached()
    call = asyncio.ensure_future(unary_call(protocol, RANGE_BLOCK, b""))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0)
    assert not protocol.streams
    assert protocol.transport.written[-1].endswith(f.rst_stream(1, f.CANCEL))


@inprocess
async def test_a_deadline_passed_is_deadline_exceeded_and_resets_the_stream():
    protocol = _detached()
    with pytest.raises(GrpcError) as e:
        await unary_call(protocol, RANGE_BLOCK, b"", timeout=0.05)
    assert (e.value.code, e.value.name, e.value.message) == (4, "DEADLINE_EXCEEDED",
                                                             "Deadline Exceeded")
    await asyncio.sleep(0)
    assert not protocol.streams
    assert protocol.transport.written[-1].endswith(f.rst_stream(1, f.CANCEL))


@inprocess
async def test_a_deadline_the_server_keeps(memory_client):
    client, _ = memory_client
    assert (await client.put(pb.PutRequest(key=b"k", value=b"v"), timeout=5)).header.revision


@inprocess
def test_grpc_timeout_header():
    assert encode_timeout(0.05) == b"50000000n"
    assert encode_timeout(2.5) == b"2500000u"
    assert encode_timeout(1000) == b"1000000m"
    assert encode_timeout(0) == b"0n"
    assert encode_timeout(200_000) == b"200000S"
    assert (b"grpc-timeout", b"1000000u") in request_headers(b"/p", b"a", 1.0)
    assert all(name != b"grpc-timeout" for name, _ in request_headers(b"/p", b"a"))
    # the precomputed block with the timeout appended decodes as the headers encoded whole
    assert Decoder().decode(with_timeout(request_block(b"/p", b"a"), 1.0)) == request_headers(
        b"/p", b"a", 1.0)


class _Responded:
    """A UnaryCall given ``events``; ``outcome`` is what its callback was told."""

    def __init__(self, *events: Callable[[UnaryCall], None]):
        self.outcomes: list[tuple[int, bytes | str]] = []
        call = UnaryCall(lambda code, payload: self.outcomes.append((code, payload)))
        for event in events:
            event(call)
        assert len(self.outcomes) <= 1  # told once

    @property
    def outcome(self) -> tuple[int, bytes | str]:
        [outcome] = self.outcomes
        return outcome


OK_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]


@inprocess
async def test_a_message_split_across_frames_and_a_trailers_only_error():
    body = PREFIX.pack(0, 5) + b"hello"
    split = _Responded(lambda r: r.headers(OK_HEAD, False),
                       *[(lambda r, b=body[i:i + 1]: r.data(b)) for i in range(len(body))],
                       lambda r: r.headers([(b"grpc-status", b"0")], True), UnaryCall.end_of_stream)
    assert split.outcome == (0, b"hello")

    only = _Responded(lambda r: r.headers(OK_HEAD + [(b"grpc-status", b"11"),
                                                     (b"grpc-message", b"50%25 %E2%9C%93")], True),
                      UnaryCall.end_of_stream)
    assert only.outcome == (11, "50% \u2713")


@inprocess
async def test_what_a_unary_response_may_not_be():
    def outcome(*events) -> tuple[int, bytes | str]:
        return _Responded(*events).outcome

    def head(r: UnaryCall) -> None:
        r.headers(OK_HEAD, False)

    def ok(r: UnaryCall) -> None:
        r.headers([(b"grpc-status", b"0")], True)

    end = UnaryCall.end_of_stream
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
    assert split_targets("a:1, b:2,") == split_targets(["a:1", "b:2"]) == ["a:1", "b:2"]
    with pytest.raises(ValueError):
        split_targets("")


# -- against real servers, grpcio as the reference ------------------------------------------------
#
# One sequence of requests, written for a key prefix and the revision the run starts from, is
# run twice on one fresh server: first through grpcio under b"g/", then through the client under
# b"c/". The second run sees the same state shifted by N revisions (what the first run wrote),
# so each of its responses must be the reference's with keys renamed and revisions moved by N:
# the same fields, each write advancing the revision by one just as the reference's did. Every
# read of the second run is also sent through grpcio back to back, on the same state, and must
# be equal as it is.

Step = tuple[str, Callable[[bytes, int], object], bool]  # method, request(prefix, base), read


def _cmp_mod(key: bytes, rev: int) -> pb.Compare:
    return pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=rev)


def _txn(p: bytes, b: int, rev: int) -> pb.TxnRequest:
    return pb.TxnRequest(
        compare=[_cmp_mod(p + b"a", b + rev)],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=p + b"d", value=b"%d" % rev))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=p + b"a"))])


def _prefix_end(p: bytes) -> bytes:
    return p[:-1] + bytes([p[-1] + 1])


SEQUENCE: list[Step] = [
    ("Put", lambda p, b: pb.PutRequest(key=p + b"a", value=b"1", prev_kv=True), False),
    ("Put", lambda p, b: pb.PutRequest(key=p + b"a", value=b"2", prev_kv=True), False),
    ("Put", lambda p, b: pb.PutRequest(key=p + b"b", value=b"1"), False),
    ("Put", lambda p, b: pb.PutRequest(key=p + b"c", value=b"1", lease=0), False),
    ("Range", lambda p, b: pb.RangeRequest(key=p, range_end=_prefix_end(p), limit=2), True),
    ("Range", lambda p, b: pb.RangeRequest(key=p, range_end=_prefix_end(p), count_only=True), True),
    ("Range", lambda p, b: pb.RangeRequest(key=p + b"a", revision=b + 1), True),
    ("Txn", lambda p, b: _txn(p, b, 2), False),  # a's mod_revision is b+2: the put
    ("Txn", lambda p, b: _txn(p, b, 1), True),  # it is not b+1: the range, no new revision
    ("DeleteRange", lambda p, b: pb.DeleteRangeRequest(key=p + b"b", prev_kv=True), False),
    ("Put", lambda p, b: pb.PutRequest(key=b"", value=b"v"), False),  # INVALID_ARGUMENT
    ("Range", lambda p, b: pb.RangeRequest(key=p + b"a", revision=b + 100), True),  # future
    ("Compact", lambda p, b: pb.CompactionRequest(revision=b + 3), False),
    ("Range", lambda p, b: pb.RangeRequest(key=p + b"a", revision=b + 1), True),  # compacted
    ("Range", lambda p, b: pb.RangeRequest(key=p, range_end=_prefix_end(p)), True),
]

_SNAKE = {"Put": "put", "Range": "range", "DeleteRange": "delete_range", "Txn": "txn",
          "Compact": "compact"}

Outcome = tuple[str, object]  # ("ok", response) or ("error", (code, message))


def _via_grpc(stub: rpc_pb2_grpc.KVStub, method: str, request) -> Outcome:
    try:
        return "ok", getattr(stub, method)(request, timeout=10)
    except grpc.RpcError as e:
        return "error", (e.code().value[0], e.details())


async def _via_client(client: Client, method: str, request) -> Outcome:
    try:
        return "ok", await getattr(client, _SNAKE[method])(request, timeout=10)  # grpc-timeout
    except GrpcError as e:
        assert grpc.StatusCode[e.name].value[0] == e.code
        return "error", (e.code, e.message)


def _shifted(message, shift: int, old: bytes, new: bytes):
    """``message`` as the second run should see it: revisions moved, keys renamed."""
    out = type(message)()
    out.CopyFrom(message)

    def walk(m) -> None:
        if isinstance(m, pb.ResponseHeader):
            m.revision += shift
        elif isinstance(m, kv_pb2.KeyValue):
            assert m.key.startswith(old), m
            m.key = new + m.key[len(old):]
            m.create_revision += shift
            m.mod_revision += shift
        for field, value in m.ListFields():
            if field.message_type is None:
                continue
            for item in ([value] if isinstance(value, Message) else value):  # or repeated
                walk(item)

    walk(out)
    return out


async def _current_revision(stub: rpc_pb2_grpc.KVStub) -> int:
    return stub.Range(pb.RangeRequest(key=b"\0"), timeout=10).header.revision


@pytest.mark.parametrize("server", ["kvstore_server", "etcd_server"])
async def test_the_client_answers_as_grpcio_does(server, request):
    endpoint = request.getfixturevalue(server).endpoint
    with grpc.insecure_channel(endpoint) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)
        base = await _current_revision(stub)
        reference = [_via_grpc(stub, method, make(b"g/", base)) for method, make, _ in SEQUENCE]

        shift = await _current_revision(stub) - base
        assert shift == 6  # the reference run's writes: 4 puts, a txn's put, a delete
        async with await connect(endpoint) as client:
            for (method, make, read), (kind, expected) in zip(SEQUENCE, reference):
                req = make(b"c/", base + shift)
                got = await _via_client(client, method, req)
                if read:  # the same call through grpcio on the same state: equal as it is
                    assert _via_grpc(stub, method, req) == got, (method, req)
                if kind == "ok":
                    expected = _shifted(expected, shift, b"g/", b"c/")
                assert got == (kind, expected), (method, req)
            assert not client.channel.protocol.streams
        assert client.channel.protocol.lost.done()  # closed by the async with


async def test_a_server_gone_fails_the_next_call_unavailable(kvstore_server):
    client = await connect(kvstore_server.endpoint)
    await client.put(pb.PutRequest(key=b"k", value=b"v"))
    kvstore_server.kill()
    await asyncio.wait_for(client.channel.protocol.lost, 10)
    with pytest.raises(GrpcError) as e:
        await client.range(pb.RangeRequest(key=b"k"))
    assert e.value.name == "UNAVAILABLE"
    await client.close()  # closing what is closed already is no error


async def test_nothing_listening_is_an_os_error(kvstore_server):
    endpoint = kvstore_server.endpoint
    kvstore_server.stop()
    with pytest.raises(OSError):
        await connect(endpoint)
