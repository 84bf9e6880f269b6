"""The JSON gateway on a real kvstore server: HTTP/1.1 as clients use it (keep-alive,
pipelining, chunked bodies, 100-continue), streams that take requests as they come and end
when the client goes away, what a hostile client can and cannot do, and OpenStack's etcd3gw
client. (What etcd answers, byte for byte, is test_gateway_differential.py's.)"""
from __future__ import annotations

import base64
import json
import socket
import threading
import time

import etcd3gw
import pytest
import requests

from gateway_http import Connection, chunk, post
from procs import KvstoreProcess

pytestmark = pytest.mark.h2_transport  # served on the h2 transport's port only


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def watchers(server: KvstoreProcess) -> int:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("etcd_debugging_mvcc_watcher_total"))
    return int(float(line.split()[-1]))  # (prometheus-client writes "1.0")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    args = ["--transport", "h2", "--max-request-bytes", "100000", "--connection-idle-timeout", "1s"]
    with KvstoreProcess(tmp_path_factory.mktemp("gw") / "kv", extra_args=args) as s:
        yield s


def test_one_connection_many_requests_pipelined_chunked_and_continued(server):
    with Connection(server.port) as c:
        c.request("POST", "/v3/kv/put", json.dumps({"key": b64("k"), "value": b64("1")}))
        assert c.response().status == 200
        # two requests in one write: answered in order
        one = json.dumps({"key": b64("k"), "value": b64("2")}).encode()
        two = json.dumps({"key": b64("k")}).encode()
        c.send(b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
               b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
               % (len(one), one, len(two), two))
        assert c.response().status == 200
        assert c.response().json()["kvs"][0]["value"] == b64("2")
        # a chunked body, in pieces
        c.send(b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.send(chunk(b'{"key":') + b"3;ext=1\r\n\"aw\r\n")
        c.send(b"3\r\n==\"\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n")
        assert c.response().json()["kvs"][0]["value"] == b64("2")
        # Expect: 100-continue gets its go-ahead before the body is sent
        c.request("POST", "/v3/kv/range", None, {"Expect": "100-continue", "Content-Length": str(len(two))})
        assert c.head().status_line == "HTTP/1.1 100 Continue"
        c.send(two)
        assert c.response().json()["count"] == "1"
        # Connection: close is honoured after the answer
        c.request("POST", "/v3/kv/range", two, {"Connection": "close"})
        resp = c.response()
        assert resp.status == 200 and resp.header("Connection") == "close"
        assert c.closed_by_server(2.0)
    # HTTP/1.0: answered, then closed
    with Connection(server.port) as c:
        c.send(b"POST /v3/kv/range HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(two), two))
        resp = c.response()
        assert resp.status_line == "HTTP/1.0 200 OK" and resp.json()["count"] == "1"
        assert c.closed_by_server(2.0)
    # a requests session reuses its connection
    with requests.Session() as s:
        for _ in range(3):
            r = s.post(f"{server.url}/v3/kv/range", data=two, timeout=5)
            assert r.status_code == 200 and r.json()["count"] == "1"


def test_a_watch_takes_requests_as_they_come_and_ends_with_its_client(server):
    before = watchers(server)
    with Connection(server.port) as w:
        w.request("POST", "/v3/watch", json.dumps({"create_request": {"key": b64("w")}}), chunked_body=True)
        assert w.head().status == 200
        created = json.loads(w.next_chunk())["result"]
        assert created["created"] is True and "watch_id" not in created
        post(server.port, "/v3/kv/put", json.dumps({"key": b64("w"), "value": b64("v")}))
        event = json.loads(w.next_chunk())["result"]["events"][0]
        assert event["kv"]["key"] == b64("w") and event["kv"]["value"] == b64("v")
        w.send(chunk(b'{"create_request":{"key":"eA==","range_end":"eQ=="}} {"cancel_request":{}}'))
        assert json.loads(w.next_chunk())["result"]["watch_id"] == "1"
        assert json.loads(w.next_chunk())["result"]["canceled"] is True  # watch 0
        assert watchers(server) == before + 1
        w.send(b"0\r\n\r\n")  # the body ends; the watch goes on, as etcd's does
        post(server.port, "/v3/kv/put", json.dumps({"key": b64("xx"), "value": b64("v")}))
        assert json.loads(w.next_chunk())["result"]["events"][0]["kv"]["key"] == b64("xx")
    assert wait_for(lambda: watchers(server) == before)  # the client went away: so did its watch
    # a watch still silent, its client gone
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              + chunk(b'{"create_request":{"key":"eg=="}}'))
    assert wait_for(lambda: watchers(server) == before + 1)
    s.close()
    assert wait_for(lambda: watchers(server) == before)


def test_lease_keepalive_streams_one_answer_per_request(server):
    assert post(server.port, "/v3/lease/grant", '{"TTL":"30","ID":"4242"}').status == 200
    with Connection(server.port) as c:
        c.request("POST", "/v3/lease/keepalive", '{"ID":"4242"}', chunked_body=True)
        c.head()
        for _ in range(3):
            answer = json.loads(c.next_chunk())["result"]
            assert answer["ID"] == "4242" and answer["TTL"] == "30"
            c.send(chunk(b'{"ID":"4242"}'))
        assert json.loads(c.next_chunk())["result"]["ID"] == "4242"
        c.send(b"0\r\n\r\n")
        assert c.next_chunk() is None  # the body's end ends the call, and the answer
        c.trailers()
        c.request("POST", "/v3/kv/range", '{"key":"eA=="}')  # and the connection goes on
        assert c.response().status == 200


def test_auth_routes_answer_and_malformed_bodies_are_refused_first(server):
    resp = post(server.port, "/v3/auth/user/get", '{"name":"nobody"}')
    assert resp.status_line == "HTTP/1.1 412 Precondition Failed"
    assert resp.body == (b'{"error":"etcdserver: user name not found","message":'
                         b'"etcdserver: user name not found","code":9}')
    # a malformed body is refused first, as etcd's gateway decodes before it calls
    assert post(server.port, "/v3/auth/user/get", '{"name":5}').status == 400


def test_bodies_too_large_are_refused_and_the_server_goes_on(server):
    limit = 100000 + 512 * 1024  # --max-request-bytes and gRPC's overhead
    resp = post(server.port, "/v3/kv/put", json.dumps({"key": b64("big"), "value": base64.b64encode(
        b"x" * 200000).decode()}))
    assert resp.status == 400 and resp.json()["error"] == "etcdserver: request is too large"
    resp = post(server.port, "/v3/kv/put", json.dumps({"key": b64("big"), "value": base64.b64encode(
        b"x" * (limit + 1)).decode()}))
    assert resp.status == 429
    assert resp.json()["error"] == f"grpc: received message larger than max ({limit + 10} vs. {limit})"
    # a body past twice the limit is not read to its end: refused, and the connection closed
    with Connection(server.port) as c:
        c.send(b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        sent = 0
        try:
            while sent < 1000000000:
                c.sock.sendall(b" " * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        # the server stopped taking it (what it took is its limit and the sockets' buffers)
        assert sent < 64 * 1024 * 1024
    with Connection(server.port) as c:  # nor may one value of a stream be larger
        c.request("POST", "/v3/lease/keepalive", None, {"Transfer-Encoding": "chunked"})
        c.send(chunk(b'{"ID":"'))
        try:
            for _ in range(2 * limit // 65536 + 2):
                c.send(chunk(b"1" * 65536))
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = c.response()
        assert resp.status == 429 and resp.json()["code"] == 8
    assert post(server.port, "/v3/kv/range", '{"key":"eA=="}').status == 200


@pytest.mark.parametrize("raw", [
    b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX",
    b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000,
])
def test_requests_that_cannot_be_framed_close_the_connection(server, raw):
    with Connection(server.port) as c:
        c.send(raw)
        data = b""
        try:
            while chunk_ := c.sock.recv(65536):
                data += chunk_
        except (TimeoutError, ConnectionResetError):
            pytest.fail(f"not closed; got {data!r}")
        assert data == b"" or data.startswith(b"HTTP/1.1 400 Bad Request")
    assert post(server.port, "/v3/kv/range", '{"key":"eA=="}').status == 200


def test_an_idle_keepalive_connection_is_closed_but_a_quiet_watch_is_not(server):
    with Connection(server.port) as idle, Connection(server.port) as w:
        idle.request("POST", "/v3/kv/range", '{"key":"eA=="}')
        assert idle.response().status == 200
        w.request("POST", "/v3/watch", '{"create_request":{"key":"cQ=="}}')
        w.head()
        w.next_chunk()
        assert idle.closed_by_server(4.0)  # --connection-idle-timeout 1s
        post(server.port, "/v3/kv/put", json.dumps({"key": b64("q"), "value": b64("v")}))
        assert json.loads(w.next_chunk())["result"]["events"][0]["kv"]["key"] == b64("q")


def test_etcd3gw_client(server):
    client = etcd3gw.client(host="127.0.0.1", port=server.port)
    assert client.status()["version"]
    assert client.put("gw/a", "1") is True
    assert client.create("gw/b", "2") is True
    assert client.create("gw/b", "3") is False
    assert client.get("gw/a") == [b"1"]
    assert sorted(v for v, _ in client.get_prefix("gw/")) == [b"1", b"2"]
    assert client.replace("gw/a", "1", "9") is True
    assert client.replace("gw/a", "1", "8") is False
    lease = client.lease(ttl=30)
    assert client.put("gw/leased", "x", lease=lease)
    assert 0 < lease.ttl() <= 30
    assert lease.refresh() == 30
    assert lease.keys() == [b"gw/leased"]
    assert lease.revoke() is True
    assert client.get("gw/leased") == []
    lock = client.lock(ttl=30)
    assert lock.acquire() is True and lock.is_acquired()
    assert lock.release() is True
    events, cancel = client.watch_prefix("gw/")
    seen = []
    reader = threading.Thread(target=lambda: seen.extend([next(events), next(events)]), daemon=True)
    reader.start()
    time.sleep(0.3)  # the watch is created before the writes
    client.put("gw/c", "3")
    client.delete("gw/c")
    reader.join(10)
    cancel()
    assert [e.get("type", "PUT") for e in seen] == ["PUT", "DELETE"]
    assert seen[0]["kv"]["key"] == b"gw/c" and seen[0]["kv"]["value"] == b"3"
    assert client.delete_prefix("gw/") is True
    assert client.get_prefix("gw/") == []
