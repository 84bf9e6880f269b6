"""Connection limits of the h2 transport against a real server: the file descriptor limit is
raised at start, idle connections cannot lock new clients out, a slowloris is dropped, an idle
connection gets GOAWAY, and the HTTP/1.1 endpoints take what Go's server takes."""
from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

import grpc
import pytest

from h2client import RawH2
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.h2 import frames as f
from procs import KvstoreProcess, channel

# kvstore's own transport, whatever the pass (see the Makefile)
pytestmark = pytest.mark.h2_transport


def serves_a_new_client(server: KvstoreProcess, timeout: float = 5.0) -> bool:
    # (a channel of its own: grpc would otherwise reuse a connection another channel made)
    with grpc.insecure_channel(server.endpoint, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        return rpc.KVStub(ch).Range(pb.RangeRequest(key=b"x"), timeout=timeout).header.revision >= 1


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within ``within`` s (what it sends first, a
    GOAWAY say, is read and dropped)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def _told_goaway(conn: RawH2) -> bool:
    try:
        return conn.frames_until(lambda fr: fr[0] == f.GOAWAY, timeout=1.0)[-1][0] == f.GOAWAY
    except (TimeoutError, IndexError):
        return False


def soft_fd_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no limit")


def test_idle_connections_past_a_low_fd_limit_do_not_lock_new_clients_out(tmp_path):
    """1,100 idle connections to a server started with a soft limit of 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.fail(f"this test needs a hard descriptor limit of at least 4096 (it is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # what the server inherits
    try:
        server = KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2"]).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    idle: list[socket.socket] = []
    try:
        assert server.proc is not None
        assert soft_fd_limit(server.proc.pid) > 1024  # raised to the hard limit, as Go does
        for i in range(1100):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                s.sendall(f.PREFACE + f.settings({}))  # half of them said hello
            idle.append(s)
        t = time.monotonic()
        assert serves_a_new_client(server)
        assert time.monotonic() - t < 2.0
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_a_slowloris_is_dropped_after_the_handshake_timeout(tmp_path):
    args = ["--transport", "h2", "--handshake-timeout", "0.5s"]
    with KvstoreProcess(tmp_path / "kv", extra_args=args) as server:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        dribble = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        half_preface = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        half_preface.sendall(f.PREFACE[:10])
        t = time.monotonic()
        try:
            for ch in b"GET /health HTTP/1.1\r\n":  # a byte every 50 ms: never a whole request
                dribble.sendall(bytes([ch]))
                time.sleep(0.05)
        except BrokenPipeError:  # dropped while still dribbling
            assert time.monotonic() - t >= 0.45
        assert closed_by_server(silent, 2.0)
        assert closed_by_server(dribble, 2.0)
        assert closed_by_server(half_preface, 2.0)
        hello = RawH2(server.port)  # one that said hello in time stays
        assert not closed_by_server(hello.sock, 1.0)
        assert serves_a_new_client(server)


def test_an_idle_connection_gets_goaway_after_the_idle_timeout(tmp_path):
    with KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2", "--connection-idle-timeout",
                                                     "0.5s"]) as server:
        idle = RawH2(server.port)
        frames = idle.frames_until(lambda fr: fr[0] == f.GOAWAY, timeout=3.0)
        goaway = frames[-1]
        assert goaway[0] == f.GOAWAY and f.unpack_u32(goaway[3][4:8]) == f.NO_ERROR
        assert idle.read_frame(timeout=2.0) is None  # then closed
        # a connection with a stream open is not idle, however long the stream is quiet
        with channel(server.endpoint) as ch:
            watch = rpc.WatchStub(ch).Watch(iter([pb.WatchRequest(create_request=pb.WatchCreateRequest(
                key=b"k"))]))
            assert next(watch).created
            time.sleep(1.5)
            rpc.KVStub(ch).Put(pb.PutRequest(key=b"k", value=b"v"), timeout=5)
            assert next(watch).events[0].kv.value == b"v"
            watch.cancel()


def test_past_max_connections_the_longest_idle_makes_room_and_busy_ones_refuse(tmp_path):
    args = ["--transport", "h2", "--max-connections", "8"]
    with KvstoreProcess(tmp_path / "kv", extra_args=args) as server:
        idle = [RawH2(server.port) for _ in range(8)]
        time.sleep(0.2)
        assert serves_a_new_client(server)  # a ninth: the one idle the longest goes
        # (which one: they said hello within a few ms, maybe within one turn of the loop)
        told = [conn for conn in idle if _told_goaway(conn)]
        assert len(told) == 1
        for conn in idle:
            conn.close()
        time.sleep(0.2)
        # eight connections each with a Watch open: none idle, so a ninth is refused
        channels = [grpc.insecure_channel(server.endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(8)]
        watches = []
        try:
            for ch in channels:
                w = rpc.WatchStub(ch).Watch(iter([pb.WatchRequest(create_request=pb.WatchCreateRequest(
                    key=b"k"))]))
                assert next(w).created
                watches.append(w)
            ninth = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            assert closed_by_server(ninth, 2.0)
            for w in watches:
                w.cancel()
        finally:
            for ch in channels:
                ch.close()
        assert server.proc is not None and server.proc.poll() is None


@pytest.fixture(scope="module")
def h2_server(tmp_path_factory):
    with KvstoreProcess(tmp_path_factory.mktemp("h1") / "kv", extra_args=["--transport", "h2"]) as s:
        yield s


def http1(server: KvstoreProcess, *parts: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        for part in parts:
            s.sendall(part)
            time.sleep(0.05)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.mark.parametrize("parts", [
    (b"G", b"ET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GE", b"T /health HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET", b" /health HTTP/1.1\r\nHost: x\r\n\r\n"),
], ids=["1 byte", "2 bytes", "3 bytes"])
def test_http1_request_whose_first_segment_is_short(h2_server, parts):
    out = http1(h2_server, *parts)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b'{"health":"true","reason":""}')


@pytest.mark.parametrize("method", [b"TRACE", b"PATCH", b"POST", b"DELETE"])
def test_http1_methods_other_than_get_are_405(h2_server, method):
    out = http1(h2_server, method + b" /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    head = out.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 405 Method Not Allowed"
    assert b"Allow: GET, HEAD" in head


def test_http1_bare_lf_line_endings_and_http10(h2_server):
    out = http1(h2_server, b"GET /health HTTP/1.1\nHost: x\n\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b'"reason":""}')
    out = http1(h2_server, b"GET /version HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 200 OK\r\n")
    out = http1(h2_server, b"GET /health FOO/9\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
