"""The limits a client meets, against real servers: concurrent streams and the header list
(kvstore's h2 transport announces and enforces them), Txns with many ops and deep nesting (the
same answers as etcd's), and a watcher that never reads (its memory stays bounded, as etcd's
slow watchers do, and it catches up from history once it reads)."""
from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from h2client import RawH2, grpc_message, request_headers
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.h2 import frames as f
from kvstore.h2.settings import OUR_MAX_CONCURRENT_STREAMS, OUR_MAX_HEADER_LIST
from kvstore.server.transport.h2.grpc_call import literal
from procs import EtcdProcess, KvstoreProcess, channel

RANGE = b"/etcdserverpb.KV/Range"


@pytest.fixture(scope="module")
def h2_server(tmp_path_factory):
    with KvstoreProcess(tmp_path_factory.mktemp("limits") / "kv", extra_args=["--transport", "h2"]) as s:
        yield s


def settings_of(conn: RawH2) -> dict[int, int]:
    frames = conn.frames_until(lambda fr: fr[0] == f.SETTINGS and not fr[1] & f.ACK)
    return dict(f.parse_settings(frames[-1][3]))


@pytest.mark.h2_transport
def test_streams_past_max_concurrent_streams_are_refused(h2_server):
    conn = RawH2(h2_server.port, settings={f.INITIAL_WINDOW_SIZE: f.MAX_WINDOW})
    assert settings_of(conn)[f.MAX_CONCURRENT_STREAMS] == OUR_MAX_CONCURRENT_STREAMS
    block = request_headers(RANGE)
    # every stream opened and left waiting for its request
    batch = b"".join(f.frame(f.HEADERS, f.END_HEADERS, 2 * i + 1, block)
                     for i in range(OUR_MAX_CONCURRENT_STREAMS))
    conn.send(batch)
    over = 2 * OUR_MAX_CONCURRENT_STREAMS + 1
    conn.send(f.frame(f.HEADERS, f.END_HEADERS, over, block))
    frames = conn.frames_until(lambda fr: fr[0] in (f.RST_STREAM, f.GOAWAY), timeout=30)
    assert frames[-1][0] == f.RST_STREAM and frames[-1][2] == over
    assert f.unpack_u32(frames[-1][3]) == f.REFUSED_STREAM
    # the connection goes on: a stream that ends makes room for the next
    conn.send(f.frame(f.DATA, f.END_STREAM, 1, grpc_message(pb.RangeRequest(key=b"k"))))
    conn.send(f.frame(f.HEADERS, f.END_HEADERS, over + 2, block)
              + f.frame(f.DATA, f.END_STREAM, over + 2, grpc_message(pb.RangeRequest(key=b"k"))))
    done = conn.frames_until(lambda fr: fr[0] == f.HEADERS and fr[2] == over + 2 and fr[1] & f.END_STREAM,
                             timeout=30)
    assert all(fr[0] != f.RST_STREAM or fr[2] != over + 2 for fr in done)
    conn.close()


def header_block_request(conn: RawH2, sid: int, extra: bytes) -> None:
    block = request_headers(RANGE) + extra
    pieces = [block[i:i + f.DEFAULT_MAX_FRAME] for i in range(0, len(block), f.DEFAULT_MAX_FRAME)]
    frames = [f.frame(f.HEADERS, f.END_HEADERS if len(pieces) == 1 else 0, sid, pieces[0])]
    for i, piece in enumerate(pieces[1:], 1):
        frames.append(f.frame(f.CONTINUATION, f.END_HEADERS if i == len(pieces) - 1 else 0, sid, piece))
    frames.append(f.frame(f.DATA, f.END_STREAM, sid, grpc_message(pb.RangeRequest(key=b"k"))))
    conn.send(b"".join(frames))


@pytest.mark.h2_transport
def test_a_header_list_past_the_announced_size_ends_the_connection(h2_server):
    conn = RawH2(h2_server.port)
    assert settings_of(conn)[f.MAX_HEADER_LIST_SIZE] == OUR_MAX_HEADER_LIST
    header_block_request(conn, 1, literal(b"x-fits", b"a" * (OUR_MAX_HEADER_LIST - 1024)))
    answer = conn.frames_until(lambda fr: fr[0] == f.HEADERS and fr[1] & f.END_STREAM)
    assert answer[-1][2] == 1  # answered
    header_block_request(conn, 3, literal(b"x-too-big", b"a" * (OUR_MAX_HEADER_LIST + 1)))
    frames = conn.frames_until(lambda fr: fr[0] == f.GOAWAY)
    assert frames[-1][0] == f.GOAWAY and f.unpack_u32(frames[-1][3][4:8]) == f.COMPRESSION_ERROR
    with channel(h2_server.endpoint) as ch:  # the others go on
        rpc.KVStub(ch).Range(pb.RangeRequest(key=b"k"), timeout=5)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def nested_txn(depth: int) -> bytes:
    """A Txn nested ``depth`` levels (serialized by hand: protobuf itself refuses past ~50)."""
    t = pb.TxnRequest(success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"a"))]).SerializeToString()
    for _ in range(depth):
        op = b"\x22" + _varint(len(t)) + t  # RequestOp.request_txn
        t = b"\x12" + _varint(len(op)) + op  # TxnRequest.success
    return t


def txn_answers(endpoint: str) -> list[tuple[str, str]]:
    out = []
    with grpc.insecure_channel(endpoint) as ch:
        call = ch.unary_unary("/etcdserverpb.KV/Txn", request_serializer=lambda m: m,
                              response_deserializer=lambda b: b)
        r = pb.RequestOp(request_range=pb.RangeRequest(key=b"a"))
        wide = [pb.TxnRequest(success=[r] * 128), pb.TxnRequest(success=[r] * 129),
                pb.TxnRequest(success=[r] * 5000)]
        for body in [*(t.SerializeToString() for t in wide),
                     *(nested_txn(d) for d in (10, 49, 50, 100, 126, 127, 128, 1000, 100_000))]:
            try:
                call(body, timeout=30)
                out.append(("OK", ""))
            except grpc.RpcError as e:
                out.append((e.code().name, e.details()))
    return out


def test_txns_with_many_ops_and_deep_nesting_answer_as_etcd(tmp_path):
    with EtcdProcess(tmp_path / "etcd") as etcd:
        expected = txn_answers(etcd.endpoint)
    with KvstoreProcess(tmp_path / "kv") as kv:
        assert txn_answers(kv.endpoint) == expected
    assert expected[0] == ("OK", "") and expected[-1][0] == "INVALID_ARGUMENT"


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.h2_transport  # the slow watcher gauge is on /metrics, which grpcio cannot serve
def test_a_watcher_that_never_reads_stays_bounded_and_catches_up(tmp_path, capsys):
    """20 MB of puts with no watcher, then 20 MB more with a watcher whose client never reads:
    the second costs the server about what the first did (the watcher falls back to catch-up
    from history instead of queueing), and once it reads it gets every event, in order."""
    value = b"v" * 10_000
    with KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2"]) as server, \
            channel(server.endpoint) as ch:
        assert server.proc is not None
        kv = rpc.KVStub(ch)

        def write(prefix: bytes) -> int:
            before = rss(server.proc.pid)
            for i in range(2000):
                kv.Put(pb.PutRequest(key=prefix + b"%05d" % i, value=value), timeout=10)
            time.sleep(0.5)
            return rss(server.proc.pid) - before

        alone = write(b"/a/")
        stalled = RawH2(server.port, settings={f.INITIAL_WINDOW_SIZE: f.MAX_WINDOW})
        stalled.send(f.window_update(0, f.MAX_WINDOW - f.DEFAULT_WINDOW))
        create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"/b/", range_end=b"/b0"))
        stalled.send(f.frame(f.HEADERS, f.END_HEADERS, 1, request_headers(b"/etcdserverpb.Watch/Watch"))
                     + f.frame(f.DATA, 0, 1, grpc_message(create)))
        time.sleep(0.5)
        watched = write(b"/b/")
        metrics = _metrics(server)
        extra = watched - alone
        with capsys.disabled():
            print(f"\nslow watcher: 20 MB of events unread cost the server {extra / 2**20:+.1f} MiB "
                  f"over the same writes unwatched ({watched / 2**20:.1f} vs {alone / 2**20:.1f} MiB); "
                  f"slow watchers {metrics}")
        assert extra < 16 << 20
        assert metrics >= 1  # it fell back to catch-up
        # now it reads: every event, in order, from history
        revs = []
        deadline = time.monotonic() + 60
        while len(revs) < 2000 and time.monotonic() < deadline:  # (its windows are the largest)
            fr = stalled.read_frame(timeout=10)
            assert fr is not None
            if fr[0] == f.DATA:
                revs.extend(_event_revisions(stalled, fr[3]))
        assert len(revs) == 2000 and revs == sorted(revs) and len(set(revs)) == 2000


def _metrics(server: KvstoreProcess) -> int:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_slow_watcher_total"):
                return int(float(line.split()[-1]))
    raise AssertionError("no slow watcher gauge")


_partial: dict[int, bytes] = {}


def _event_revisions(conn: RawH2, payload: bytes) -> list[int]:
    """Event mod_revisions of the WatchResponses in a DATA payload (messages may straddle
    frames: the rest is kept for the next)."""
    buf = _partial.pop(id(conn), b"") + payload
    out = []
    while len(buf) >= 5:
        n = int.from_bytes(buf[1:5], "big")
        if len(buf) < 5 + n:
            break
        resp = pb.WatchResponse.FromString(buf[5:5 + n])
        out.extend(ev.kv.mod_revision for ev in resp.events)
        buf = buf[5 + n:]
    _partial[id(conn)] = buf
    return out
