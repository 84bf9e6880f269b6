"""kvstore's own HTTP/2 transport at the frame level: the protocol rules, flow control,
cancellation, HTTP/1.1 endpoints on the same port. Real server process, raw sockets."""
import asyncio
import json
import struct
import time
import urllib.request

import grpc
import pytest

from h2client import RawH2, grpc_message, request_headers
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.h2 import frames as f
from kvstore.h2.hpack_select import Decoder
from procs import KvstoreProcess

# kvstore's own transport, whatever the pass (see the Makefile)
pytestmark = pytest.mark.h2_transport


@pytest.fixture(scope="module")
def h2_server(tmp_path_factory):
    with KvstoreProcess(tmp_path_factory.mktemp("h2") / "kv", extra_args=["--transport", "h2"]) as s:
        yield s


def get(server, path):
    with urllib.request.urlopen(f"{server.url}{path}", timeout=5) as r:
        return r.status, r.headers["Content-Type"], r.read()


def still_serves(server):
    with grpc.insecure_channel(server.endpoint) as ch:
        return rpc.KVStub(ch).Put(pb.PutRequest(key=b"alive", value=b"1")).header.revision > 1


def test_http_endpoints_share_the_client_port(h2_server):
    assert get(h2_server, "/health") == (200, "application/json", b'{"health":"true","reason":""}')
    status, _, body = get(h2_server, "/version")
    assert json.loads(body)["etcdserver"] == "3.5.21"
    status, ctype, body = get(h2_server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert b"\netcd_server_has_leader 1.0\n" in body
    with pytest.raises(urllib.error.HTTPError) as e:
        get(h2_server, "/nope")
    assert e.value.code == 404


def test_bad_preface_gets_goaway_and_server_keeps_serving(h2_server):
    c = RawH2(h2_server.port, preface=b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    frames = c.frames_until(lambda fr: fr[0] == f.GOAWAY)
    assert frames and frames[-1][0] == f.GOAWAY
    assert struct.unpack(">LL", frames[-1][3][:8])[1] == f.PROTOCOL_ERROR
    assert c.read_frame() is None  # closed
    assert still_serves(h2_server)


def test_ping_is_acknowledged_with_its_payload(h2_server):
    c = RawH2(h2_server.port)
    c.frame(f.PING, 0, 0, b"12345678")
    frames = c.frames_until(lambda fr: fr[0] == f.PING)
    assert frames[-1] == (f.PING, f.ACK, 0, b"12345678")
    c.close()


def test_malformed_hpack_is_a_compression_error(h2_server):
    c = RawH2(h2_server.port)
    c.frame(f.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff\xff\xff\xff")  # index out of range
    frames = c.frames_until(lambda fr: fr[0] == f.GOAWAY)
    assert struct.unpack(">LL", frames[-1][3][:8])[1] == f.COMPRESSION_ERROR
    assert still_serves(h2_server)


def test_frame_on_wrong_stream_state_resets_only_that_stream(h2_server):
    c = RawH2(h2_server.port)
    c.frame(f.DATA, 0, 1, b"x")  # DATA on an idle stream: a connection error
    frames = c.frames_until(lambda fr: fr[0] == f.GOAWAY)
    assert struct.unpack(">LL", frames[-1][3][:8])[1] == f.PROTOCOL_ERROR
    c = RawH2(h2_server.port)
    c.frame(f.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00")  # zero increment on the connection
    frames = c.frames_until(lambda fr: fr[0] == f.GOAWAY)
    assert struct.unpack(">LL", frames[-1][3][:8])[1] == f.PROTOCOL_ERROR


def test_unknown_method_is_unimplemented(h2_server):
    c = RawH2(h2_server.port)
    c.frame(f.HEADERS, f.END_HEADERS, 1, request_headers(b"/etcdserverpb.KV/Nope"))
    c.frame(f.DATA, f.END_STREAM, 1, b"\x00\x00\x00\x00\x00")
    frames = c.frames_until(lambda fr: fr[0] == f.HEADERS and fr[1] & f.END_STREAM)
    headers = dict(Decoder().decode(frames[-1][3]))
    assert headers[b"grpc-status"] == b"12"
    assert headers[b"grpc-message"] == b"unknown method Nope for service etcdserverpb.KV"


def _data_until_quiet(c: RawH2) -> bytes:
    """The DATA payloads the server sends until it has sent nothing for half a second."""
    body = b""
    while True:
        try:
            fr = c.read_frame(timeout=0.5)
        except TimeoutError:
            return body
        if fr[0] == f.DATA:
            body += fr[3]


def test_small_windows_split_a_large_response_and_wait_for_window_updates(h2_server):
    value = bytes(range(256)) * 800  # 200 KB
    with grpc.insecure_channel(h2_server.endpoint) as ch:
        rpc.KVStub(ch).Put(pb.PutRequest(key=b"big", value=value))
    c = RawH2(h2_server.port, settings={f.INITIAL_WINDOW_SIZE: 1000})
    c.frame(f.HEADERS, f.END_HEADERS, 1, request_headers(b"/etcdserverpb.KV/Range"))
    c.frame(f.DATA, f.END_STREAM, 1, grpc_message(pb.RangeRequest(key=b"big")))
    # without window updates the server may send 1000 bytes on the stream, no more
    body = _data_until_quiet(c)
    assert len(body) == 1000
    done = False
    while not done:
        c.frame(f.WINDOW_UPDATE, 0, 1, struct.pack(">L", 30_000))
        c.frame(f.WINDOW_UPDATE, 0, 0, struct.pack(">L", 30_000))
        for fr in c.frames_until(lambda fr: fr[0] in (f.DATA, f.HEADERS)):
            if fr[0] == f.DATA:
                body += fr[3]
                assert len(fr[3]) <= 16384  # our peer's default max frame size
            elif fr[1] & f.END_STREAM:
                done = True
    length = struct.unpack(">L", body[1:5])[0]
    assert length == len(body) - 5
    resp = pb.RangeResponse.FromString(body[5:])
    assert resp.kvs[0].value == value


async def test_client_reset_cancels_a_watch(h2_server):
    c = RawH2(h2_server.port)
    c.frame(f.HEADERS, f.END_HEADERS, 1, request_headers(b"/etcdserverpb.Watch/Watch"))
    c.frame(f.DATA, 0, 1, grpc_message(pb.WatchRequest(
        create_request=pb.WatchCreateRequest(key=b"rst"))))
    c.frames_until(lambda fr: fr[0] == f.DATA)  # the created response
    assert b"etcd_debugging_mvcc_watcher_total 1.0\n" in get(h2_server, "/metrics")[2]
    c.frame(f.RST_STREAM, 0, 1, struct.pack(">L", f.CANCEL))
    await asyncio.sleep(0.2)
    assert b"etcd_debugging_mvcc_watcher_total 0.0\n" in get(h2_server, "/metrics")[2]
    c.close()


def _whole_messages(body: bytes) -> tuple[list[bytes], bytes]:
    """The whole gRPC messages at the start of ``body``, and the rest (a message cut short)."""
    out = []
    while len(body) >= 5:
        length = struct.unpack(">L", body[1:5])[0]
        if len(body) < 5 + length:
            break
        out.append(body[5:5 + length])
        body = body[5 + length:]
    return out, body


def test_watch_held_by_a_small_window_resumes_in_order_after_half_close(h2_server):
    """A watch stream's responses go out when it has some, no more than the windows allow: the
    rest waits (the stream is held) until the client grants window, then all of it comes, in
    order. The client half-closed its side first: it still receives."""
    c = RawH2(h2_server.port, settings={f.INITIAL_WINDOW_SIZE: 1000})
    c.frame(f.HEADERS, f.END_HEADERS, 1, request_headers(b"/etcdserverpb.Watch/Watch"))
    c.frame(f.DATA, f.END_STREAM, 1, grpc_message(pb.WatchRequest(
        create_request=pb.WatchCreateRequest(key=b"held/", range_end=b"held0"))))
    first = c.frames_until(lambda fr: fr[0] == f.DATA)[-1][3]
    (created,), _ = _whole_messages(first)
    assert pb.WatchResponse.FromString(created).created
    with grpc.insecure_channel(h2_server.endpoint) as ch:
        kv = rpc.KVStub(ch)
        revs = [kv.Put(pb.PutRequest(key=b"held/%03d" % i, value=b"v" * 40)).header.revision
                for i in range(60)]
    # without window updates: what is left of the stream's 1000 bytes, no more
    body = _data_until_quiet(c)
    assert len(body) == 1000 - len(first)
    events: list = []
    deadline = time.monotonic() + 20
    while len(events) < len(revs):
        assert time.monotonic() < deadline, f"{len(events)} events of {len(revs)}"
        c.frame(f.WINDOW_UPDATE, 0, 1, struct.pack(">L", 2000))
        c.frame(f.WINDOW_UPDATE, 0, 0, struct.pack(">L", 2000))
        fr = c.read_frame()
        if fr[0] == f.DATA:
            body += fr[3]
        messages, body = _whole_messages(body)
        events += [e for m in messages for e in pb.WatchResponse.FromString(m).events]
    assert [e.kv.mod_revision for e in events] == revs
    assert [e.kv.key for e in events] == [b"held/%03d" % i for i in range(60)]
    c.close()


def test_grpc_timeout_ends_a_stream_with_deadline_exceeded(h2_server):
    with grpc.insecure_channel(h2_server.endpoint) as ch:
        call = rpc.WatchStub(ch).Watch(iter([pb.WatchRequest(
            create_request=pb.WatchCreateRequest(key=b"deadline"))]), timeout=0.5)
        with pytest.raises(grpc.RpcError) as e:
            for _ in call:
                pass
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_oversized_message_is_resource_exhausted(h2_server):
    with grpc.insecure_channel(h2_server.endpoint, options=[
            ("grpc.max_send_message_length", -1)]) as ch:
        with pytest.raises(grpc.RpcError) as e:
            rpc.KVStub(ch).Put(pb.PutRequest(key=b"huge", value=b"x" * (3 * 1024 * 1024)))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.details().startswith("grpc: received message larger than max (")
    assert still_serves(h2_server)


def test_gzip_compressed_requests_are_accepted(h2_server):
    with grpc.insecure_channel(h2_server.endpoint, compression=grpc.Compression.Gzip) as ch:
        kv = rpc.KVStub(ch)
        kv.Put(pb.PutRequest(key=b"gz", value=b"y" * 5000))
        assert kv.Range(pb.RangeRequest(key=b"gz")).kvs[0].value == b"y" * 5000


def test_ping_flood_gets_goaway_enhance_your_calm(h2_server):
    c = RawH2(h2_server.port)
    for i in range(4):  # no open stream: pings closer than 2 h apart are strikes
        c.frame(f.PING, 0, 0, b"%08d" % i)
    frames = c.frames_until(lambda fr: fr[0] == f.GOAWAY)
    code = struct.unpack(">LL", frames[-1][3][:8])[1]
    assert code == f.ENHANCE_YOUR_CALM and frames[-1][3][8:] == b"too_many_pings"
    assert [fr[0] for fr in frames].count(f.PING) == 3  # two strikes are tolerated
    assert still_serves(h2_server)


def test_client_api_version_metadata_is_counted_and_must_be_utf8(h2_server):
    with grpc.insecure_channel(h2_server.endpoint) as ch:
        rpc.KVStub(ch).Range(pb.RangeRequest(key=b"a"), metadata=(("client-api-version", "3.5"),))
    h2 = RawH2(h2_server.port)
    block = request_headers(b"/etcdserverpb.KV/Range", extra=[(b"client-api-version", b"\xff\xfe")])
    h2.frame(f.HEADERS, f.END_HEADERS, 1, block)
    h2.frame(f.DATA, f.END_STREAM, 1, grpc_message(pb.RangeRequest(key=b"a")))
    frames = h2.frames_until(lambda fr: fr[0] == f.HEADERS and fr[1] & f.END_STREAM and fr[2] == 1)
    h2.close()
    headers = dict(Decoder().decode(frames[-1][3]))
    assert headers[b"grpc-status"] == b"3"
    assert headers[b"grpc-message"] == b"etcdserver: invalid client api version"
    _, _, body = get(h2_server, "/metrics")
    assert "# TYPE etcd_server_client_requests_total counter" in body.decode()
    assert 'etcd_server_client_requests_total{client_api_version="3.5",type="unary"} 1.0\n' in body.decode()
    assert still_serves(h2_server)
