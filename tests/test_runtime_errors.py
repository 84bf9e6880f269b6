"""A bug in a method (an exception that is not an etcd error) is logged with the call's method
and peer, answered UNKNOWN as grpc-go answers a panic-free handler error, and the connection
and server go on: in process, a server connection on a transport that records its writes."""
from __future__ import annotations

import asyncio
import logging

import pytest

from h2client import MemoryTransport, grpc_message, request_headers
from kvstore.api import rpc_pb2 as pb
from kvstore.h2 import frames as f
from kvstore.h2.frame_reader_select import FrameReader
from kvstore.h2.hpack_select import Decoder
from kvstore.server.transport.h2.grpc_call import GrpcCall
from kvstore.server.transport.h2.server import method_table
from kvstore.server.transport.h2.server_connection import H2ServerConnection

pytestmark = pytest.mark.inprocess


class BuggyKV:
    service_name = "etcdserverpb.KV"

    def Range(self, request):  # noqa: N802 - etcd's method names
        raise RuntimeError("a bug")

    def Put(self, request):  # noqa: N802
        return pb.PutResponse(header=pb.ResponseHeader(revision=7))


def statuses(out: bytes) -> dict[int, bytes]:
    """grpc-status of each stream's trailers."""
    frames, error = FrameReader(1 << 24).feed(bytes(out))
    assert error is None
    decoder = Decoder(max_table_size=4096, max_header_list_size=1 << 20)
    found = {}
    for ftype, _flags, sid, payload in frames:
        if ftype == f.HEADERS:
            for name, value in decoder.decode(payload):
                if name == b"grpc-status":
                    found[sid] = value
    return found


async def test_a_method_that_raises_is_logged_with_its_context_and_answered(caplog):
    methods = method_table([BuggyKV()])
    conn = H2ServerConnection(lambda c, s, h: GrpcCall(c, s, h, methods, 1 << 20))
    transport = MemoryTransport(peername=("127.0.0.1", 40123))
    conn.connection_made(transport)
    conn.data_received(f.PREFACE + f.settings({}))
    with caplog.at_level(logging.ERROR):
        for sid, path, msg in ((1, b"/etcdserverpb.KV/Range", pb.RangeRequest(key=b"k")),
                               (3, b"/etcdserverpb.KV/Put", pb.PutRequest(key=b"k", value=b"v"))):
            conn.data_received(f.frame(f.HEADERS, f.END_HEADERS, sid, request_headers(path))
                               + f.frame(f.DATA, f.END_STREAM, sid, grpc_message(msg)))
            for _ in range(3):
                await asyncio.sleep(0)
    assert statuses(b"".join(transport.written)) == {1: b"2", 3: b"0"}  # UNKNOWN, then the next call is fine
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "/etcdserverpb.KV/Range from 127.0.0.1:40123 failed"
    assert record.exc_info is not None and "a bug" in str(record.exc_info[1])
    assert not transport.closed
