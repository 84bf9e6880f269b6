"""The JSON gateway against a real etcd 3.4: the same requests to both, the same answers.

Each answer is compared whole: status line, headers (less Date and Content-Length, whose
value follows the ids), chunking, trailers, and the body byte for byte once the ids that
differ between two servers (cluster_id, member_id, raft_term) are masked.
"""
from __future__ import annotations

import base64
import json
import re

import pytest

from gateway_http import Connection, normalize, post
from procs import KvstoreProcess

pytestmark = pytest.mark.h2_transport  # the gateway is on kvstore's own transport's port


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def body(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# (path, body): a session's unary requests, in order; both servers start empty
UNARY = [
    ("/v3/kv/put", {"key": b64("foo"), "value": b64("bar")}),
    ("/v3/kv/put", {"key": b64("foo"), "value": b64("baz"), "prev_kv": True}),
    ("/v3beta/kv/put", {"key": b64("foo2"), "value": b64("<&>\u00e9")}),
    ("/v3/kv/put", {"key": b64("foo3"), "value": b64("x"), "ignore_value": True}),
    ("/v3/kv/range", {"key": b64("foo")}),
    ("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop")}),
    ("/v3/kv/range", {"key": b64("foo"), "rangeEnd": b64("fop"), "limit": 1}),
    ("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "count_only": True}),
    ("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "keys_only": True,
                      "sort_order": "DESCEND", "sort_target": "KEY"}),
    ("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "sort_order": 2, "sort_target": "MOD"}),
    ("/v3/kv/range", {"key": b64("foo"), "revision": "2"}),
    ("/v3/kv/range", {"key": b64("foo"), "revision": 100}),
    ("/v3/kv/range", {"key": "AA==", "range_end": "AA==", "serializable": True}),
    ("/v3/kv/range", {}),
    ("/v3/kv/range", ""),
    ("/v3/kv/range", "null"),
    ("/v3/kv/range", {"key": b64("foo"), "unknown_field": 1}),
    ("/v3/kv/deleterange", {"key": b64("foo2"), "prev_kv": True}),
    ("/v3/kv/deleterange", {"key": b64("nothing")}),
    ("/v3/kv/txn", {"compare": [{"key": b64("t"), "result": "EQUAL", "target": "VERSION", "version": "0"}],
                    "success": [{"request_put": {"key": b64("t"), "value": b64("1")}}],
                    "failure": [{"request_range": {"key": b64("t")}}]}),
    ("/v3/kv/txn", {"compare": [{"key": b64("t"), "result": "EQUAL", "target": "VERSION", "version": "0"}],
                    "success": [{"request_put": {"key": b64("t"), "value": b64("1")}}],
                    "failure": [{"request_range": {"key": b64("t")}}]}),
    ("/v3/kv/txn", {"compare": [{"key": b64("t"), "target": "VALUE", "value": b64("1")},
                                {"key": b64("foo"), "result": "LESS", "target": "MOD",
                                 "mod_revision": "100"}],
                    "success": [{"request_delete_range": {"key": b64("t"), "prev_kv": True}},
                                {"request_txn": {"success": [
                                    {"request_put": {"key": b64("u"), "value": ""}}]}},
                                {"request_range": {"key": b64("u")}}]}),
    ("/v3/kv/txn", {"success": [{"request_put": {"key": b64("d"), "value": ""}},
                                {"request_put": {"key": b64("d"), "value": ""}}]}),
    ("/v3/kv/txn", {}),
    ("/v3/lease/grant", {"TTL": "60", "ID": "1000"}),
    ("/v3/lease/grant", {"TTL": 60, "ID": 1000}),
    ("/v3/kv/put", {"key": b64("leased"), "value": b64("v"), "lease": "1000"}),
    ("/v3/kv/put", {"key": b64("leased"), "value": b64("v"), "lease": "999"}),
    ("/v3/lease/leases", {}),
    ("/v3/kv/lease/leases", ""),
    ("/v3/lease/timetolive", {"ID": "1000", "keys": True}),
    ("/v3/kv/lease/timetolive", {"ID": "1000"}),
    ("/v3/lease/revoke", {"ID": "1000"}),
    ("/v3/kv/lease/revoke", {"ID": "1000"}),
    ("/v3/lease/timetolive", {"ID": "1000"}),
    ("/v3/kv/range", {"key": b64("leased")}),
    ("/v3/kv/compaction", {"revision": "3"}),
    ("/v3/kv/range", {"key": b64("foo"), "revision": "2"}),
    ("/v3/kv/compaction", {"revision": "3"}),
    ("/v3/kv/compaction", {"revision": "1000"}),
    ("/v3/kv/put", {"key": "", "value": b64("v")}),
]

# bodies that are not a request of the right shape, to /v3/kv/range (or the path given)
MALFORMED = [
    '{"key":"Zm9v",', '{"key":5}', '{"key":"!!!"}', '{"key":"Zm9"}', '{"key":"Zm9v-_"}',
    '{"key":"Zg=x"}', '{"key":"Zg="}', '{"key":"Zm9v","serializable":"yes"}',
    '{"key":"Zm9v","sort_order":"XYZ"}', '{"key":"Zm9v","limit":"abc"}', '{"key":"Zm9v","limit":1.5}',
    '{"key":"Zm9v","limit":"5x"}', '{"key":"Zm9v","limit":""}', '{"key":"Zm9v","limit":true}',
    '[1,2]', '"str"', 'xyz', '{"key" "Zm9v"}', '{"key":"Zm9v"} trailing garbage', '{"a":1 2}',
    '[1 2]', '{"key":"Zm9v","range_end":null}', '{"key":"Zm9v","revision":"-1"}', '   ', '{"key":"a\\qb"}',
    '{"key":"Zm9v","limit":99999999999999999999}', '{"key":"Zm9v","limit":-5}', '{"key":{}}', '{"key":[]}',
    '{"key":"Zm9v","sort_order":1.5}', '{"key":"Zm9v","sort_order":true}', '{"key":"Zm9v","sort_order":"1"}',
    '{"key":"Zm9v","sort_order":99999999999}', '{"key":1.5}', '{"key":"Zm9v","limit":1e3}', '{"key":[1.5]}',
    '{"key":[300]}', '{"key":[true]}', '{"key":[102,111,111]}', '{"key":"Zm9v","limit":"1e3"}',
    '{"key":"Zm9v","limit":" 5 "}', '{"key":"Zm9v","serializable":1}', '{"key":"Zm9v"}{"key":',
    '{"key":"Zm9v","limit":NaN}', '{"key":"Zm9v","limit":tru}', '{"key":"a\\u00"}',
    ("/v3/kv/txn", '{"compare":{}}'), ("/v3/kv/txn", '{"success":[{"request_put":5}]}'),
    ("/v3/kv/txn", '{"compare":[{"result":"NOPE"}]}'), ("/v3/kv/txn", '{"compare":[5]}'),
    ("/v3/lease/grant", '{"TTL":"60","ID":"-1"}'), ("/v3/lease/timetolive", '{"ID":1.0}'),
    ("/v3/kv/put", '{"key":"Zm9v","value":"YmFy","lease":"18446744073709551615"}'),
]

# (method, path): what the router says
ROUTING = [("GET", "/v3/kv/range"), ("PUT", "/v3/kv/range"), ("POST", "/v3/kv/nothing"),
           ("POST", "/v3/"), ("POST", "/v3beta/"), ("POST", "/v3"), ("GET", "/v3"),
           ("POST", "/v3//kv/range"), ("POST", "/v3/kv/../kv/range?x=1"), ("OPTIONS", "/v3/kv/range"),
           ("POST", "/v3/kv/range:get"), ("POST", "/v3/kv/range/"), ("POST", "/v3/kv/lease/keepalive"),
           ("POST", "/v3/maintenance/hashkv"), ("HEAD", "/v3/kv/range"), ("DELETE", "/v3/watch")]


def run_unary(port: int) -> list[dict]:
    out = []
    with Connection(port) as conn:  # one keep-alive connection for the lot
        for path, request in UNARY:
            conn.request("POST", path, body(request))
            shape = conn.response().shape()
            if "timetolive" in path:  # a second may have passed on one server, not the other
                shape["body"] = re.sub(r'"TTL":"(59|60)"', '"TTL":"60"', shape["body"])
            out.append({"request": (path, request), **shape})
    return out


def run_malformed(port: int) -> list[dict]:
    out = []
    for case in MALFORMED:
        path, request = case if isinstance(case, tuple) else ("/v3/kv/range", case)
        out.append({"request": (path, request), **post(port, path, request).shape()})
    return out


def run_routing(port: int) -> list[dict]:
    return [{"request": (method, path), **post(port, path, '{"key":"Zm9v"}', method=method).shape()}
            for method, path in ROUTING]


def run_watch(port: int) -> list:
    """Watches: two created by one body, the events of puts and a delete (each read before
    the next write), a create and a cancel in one body, a watch from a compacted revision,
    and bodies that are not WatchRequests. (etcd 3.4 reads a chunked request body to its end
    before it passes on the first request, so each body here is whole.)"""
    out: list = []
    with Connection(port) as w, Connection(port) as writer:
        w.request("POST", "/v3/watch",
                  json.dumps({"create_request": {"key": b64("w"), "prev_kv": True}})
                  + json.dumps({"create_request": {"key": b64("x"), "range_end": b64("y")}}))
        head = w.head()
        out.append([(n, v) for n, v in head.headers if n != "Date"])
        out.append(normalize(w.next_chunk()))  # created, watch 0
        out.append(normalize(w.next_chunk()))  # created, watch 1
        for path, request in (("/v3/kv/put", {"key": b64("w"), "value": b64("1")}),
                              ("/v3/kv/put", {"key": b64("w"), "value": b64("2")}),
                              ("/v3/kv/put", {"key": b64("xa"), "value": b64("v")}),
                              ("/v3/kv/deleterange", {"key": b64("w")}),
                              ("/v3/kv/txn", {"success": [{"request_put": {"key": b64("xb")}},
                                                          {"request_delete_range": {"key": b64("xa")}}]})):
            writer.request("POST", path, json.dumps(request))
            out.append(writer.response().shape())
            out.append(normalize(w.next_chunk()))
        writer.request("POST", "/v3/kv/compaction", json.dumps({"revision": "3"}))
        out.append(writer.response().shape())
    with Connection(port) as w:  # a create and a cancel, then an unknown cancel and junk
        w.request("POST", "/v3/watch", '{"create_request":{"key":"Yw=="}}{"cancel_request":{"watch_id":"0"}}'
                                       '{"cancel_request":{"watch_id":"7"}} junk')
        w.head()
        out.append(normalize(w.next_chunk()))
        out.append(normalize(w.next_chunk()))
    with Connection(port) as w:  # from a compacted revision: created, then canceled
        w.request("POST", "/v3/watch",
                  json.dumps({"create_request": {"key": b64("w"), "start_revision": "2"}}))
        w.head()
        out.append(normalize(w.next_chunk()))
        out.append(normalize(w.next_chunk()))
        # the body has ended (the client half-closed the call): the stream stays open
        assert not w.closed_by_server(0.3)
    out.append(post(port, "/v3/watch", "x").shape())
    out.append(post(port, "/v3/watch", '{"create_request":{"key":5}}').shape())
    return out


def run_keepalive(port: int) -> list:
    out = [post(port, "/v3/lease/grant", '{"TTL":"30","ID":"2000"}').shape()]
    for request in ('{"ID":"2000"}{"ID":"2000"} \n{"ID":"99"}', '{"ID":"2000"}{"ID":', "",
                    '{"ID":"2000"}{"ID":"x"}{"ID":"2000"}', "x", '{"ID":true}'):
        out.append(post(port, "/v3/lease/keepalive", request).shape())
    return out


def run_limits(port: int) -> list:
    """--max-request-bytes as etcd has it: past it the store refuses, past the gRPC limit
    (with its overhead) the transport does."""
    out = []
    for n in (1_600_000, 3_000_000):
        request = json.dumps({"key": b64("big"), "value": base64.b64encode(b"x" * n).decode()})
        out.append(post(port, "/v3/kv/put", request).shape())
    return out


def run_auth(port: int) -> list:
    """Users and a role through the gateway, auth enabled, then requests with no token, with a
    token in the Authorization header (as grpc-gateway forwards it), with a bogus one, and as a
    user without permissions. Last: it leaves auth enabled."""
    out = []
    for path, request in (("/v3/auth/user/add", {"name": "root", "password": "pw"}),
                          ("/v3/auth/role/add", {"name": "root"}),
                          ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                          ("/v3/auth/user/add", {"name": "u", "password": "upw"}),
                          ("/v3/auth/role/add", {"name": "r"}),
                          ("/v3/auth/role/grant", {"name": "r", "perm": {
                              "permType": "READ", "key": b64("foo"), "range_end": b64("fop")}}),
                          ("/v3/auth/user/grant", {"user": "u", "role": "r"}),
                          ("/v3/auth/role/get", {"role": "r"}),
                          ("/v3/auth/user/list", {}),
                          ("/v3/auth/authenticate", {"name": "root", "password": "pw"}),
                          ("/v3/auth/enable", {})):
        out.append(post(port, path, json.dumps(request)).shape())
    out.append(post(port, "/v3/kv/range", json.dumps({"key": b64("foo")})).shape())
    out.append(post(port, "/v3/auth/authenticate", '{"name":"root","password":"bad"}').shape())
    tokens = {}
    for name, password in (("root", "pw"), ("u", "upw")):
        r = post(port, "/v3/auth/authenticate", json.dumps({"name": name, "password": password}))
        out.append(r.status)
        tokens[name] = json.loads(r.body)["token"]
    for token in (tokens["root"], tokens["u"], "bogus.1"):
        for path, request in (("/v3/kv/range", {"key": b64("foo")}),
                              ("/v3/kv/put", {"key": b64("foo"), "value": b64("x")}),
                              ("/v3/auth/user/list", {})):
            out.append(post(port, path, json.dumps(request), {"Authorization": token}).shape())
    with Connection(port) as w:  # a watch on keys u may not read: created, then canceled
        w.request("POST", "/v3/watch", json.dumps({"create_request": {"key": b64("zzz")}}),
                  {"Authorization": tokens["u"]})
        w.head()
        out.append(normalize(w.next_chunk()))
    return out


SCRIPTS = [run_unary, run_malformed, run_routing, run_watch, run_keepalive, run_limits, run_auth]


@pytest.fixture
def kvstore_h2(tmp_path):
    with KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2"]) as server:
        yield server


def test_gateway_answers_as_etcd_does(kvstore_h2, etcd_server):
    kvstore_server = kvstore_h2
    for script in SCRIPTS:
        theirs = script(etcd_server.port)
        ours = script(kvstore_server.port)
        assert len(ours) == len(theirs)
        mismatches = [(mine, reference) for mine, reference in zip(ours, theirs) if mine != reference]
        assert not mismatches, f"{script.__name__}: kvstore, then etcd:\n" + "\n".join(
            f"{mine}\n{reference}\n" for mine, reference in mismatches)
