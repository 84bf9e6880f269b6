"""Fuzz target: request decoding, protobuf parsing of etcd's requests and the store's checks
(kvstore/store/validate.py), for every method kvstore serves.

Input: [method] the request's bytes. The transport parses them with the method's request class
(``FromString``: protobuf's compiled upb parser, whose only allowed error is DecodeError: the
call ends INTERNAL), then the store checks the request as etcd's v3rpc layer does (Range,
RangeStream, Put, DeleteRange, Txn: only EtcdError allowed, an etcd status). Its twin is
protobuf's pure-Python parser, run in a child process (one process holds one implementation):
the two must agree on whether the bytes parse, on the message (serialized deterministically)
and on the checks' verdict. They are known to differ on unknown fields with odd tags (upb takes
field number 0 and refuses numbers past the largest, the pure parser the other way round):
where one parser refuses what the other parsed into a message holding unknown fields, that is
not counted. A parsed request serialized and parsed again must be the same
request with the same verdict.
"""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

from google.protobuf.internal import api_implementation
from google.protobuf.message import DecodeError

from kvstore import errors
from kvstore.api import rpc_pb2 as pb
from kvstore.store import validate

from .harness import Finding, Params, agree, expect, outcome

NAME = "etcd_requests"
SERVICES = ("KV", "Watch", "Lease", "Cluster", "Maintenance")  # what kvstore serves
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
# What FromString may raise: upb raises DecodeError alone; the pure-Python parser (the twin)
# raises UnicodeDecodeError for a string field that is not UTF-8.
PARSE_ERRORS: tuple[type[Exception], ...] = (
    (DecodeError,) if api_implementation.Type() != "python" else (DecodeError, UnicodeDecodeError))


def _txn(r) -> tuple:
    validate.check_txn(r, MAX_TXN_OPS)
    return (validate.is_txn_readonly(r), validate.is_txn_serializable(r))


CHECKS = {"Range": validate.check_range, "RangeStream": validate.check_range_stream,
          "Put": validate.check_put, "DeleteRange": validate.check_delete, "Txn": _txn}

METHODS: list[tuple[str, type, object]] = []  # (path, request class, check or None)
for _service in SERVICES:
    for _m in pb.DESCRIPTOR.services_by_name[_service].methods:
        METHODS.append((f"/etcdserverpb.{_service}/{_m.name}", getattr(pb, _m.input_type.name),
                        CHECKS.get(_m.name) if _service == "KV" else None))


def decode(index: int, raw: bytes) -> tuple:
    """("decode_error",) or ("ok", the request's known fields serialized deterministically,
    the checks' verdict, whether it holds unknown fields, all of it serialized); raises Finding
    on any other exception. (The parsers keep unknown fields in different places: the
    twins are compared on the first four.)"""
    path, cls, check_fn = METHODS[index]
    parsed = outcome(f"{path}: FromString", cls.FromString, raw, allowed=PARSE_ERRORS)
    if parsed[0] == "error":
        return ("decode_error",)
    request = parsed[1]
    verdict = ("ok", None) if check_fn is None else outcome(
        f"{path}: the store's checks", check_fn, request, allowed=(errors.EtcdError,))
    serialized = request.SerializeToString(deterministic=True)
    known = cls()
    known.CopyFrom(request)
    known.DiscardUnknownFields()
    known_fields = known.SerializeToString(deterministic=True)
    return ("ok", known_fields, verdict, known_fields != serialized, serialized)


# -- the twin: protobuf's pure-Python implementation in a child process -------------------------

class _Twin:
    def __init__(self):
        env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.fuzz.etcd_requests"], cwd=root,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, index: int, raw: bytes) -> tuple:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        _send(self.proc.stdin, (index, raw))
        return _receive(self.proc.stdout)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _send(pipe, value) -> None:
    body = pickle.dumps(value)
    pipe.write(struct.pack(">L", len(body)) + body)
    pipe.flush()


def _receive(pipe):
    head = pipe.read(4)
    if len(head) < 4:
        raise Finding("the pure-Python protobuf twin died")
    return pickle.loads(pipe.read(struct.unpack(">L", head)[0]))


_twin: _Twin | None = None


def _ask_twin(index: int, raw: bytes) -> tuple:
    global _twin
    if _twin is None:
        _twin = _Twin()
    try:
        return _twin.ask(index, raw)
    except BaseException:
        # interrupted mid-answer (the time limit): the pipe is out of step, start afresh
        _twin.proc.kill()
        _twin = None
        raise


def close() -> None:
    global _twin
    if _twin is not None:
        _twin.close()
        _twin = None


def _serve_twin() -> None:
    from google.protobuf.internal import api_implementation

    assert api_implementation.Type() == "python"
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        index, raw = pickle.loads(stdin.read(struct.unpack(">L", head)[0]))
        try:
            answer = decode(index, raw)
        except Finding as e:
            answer = ("finding", str(e))
        _send(stdout, answer)


# -- the target --------------------------------------------------------------------------------

def check(data: bytes) -> None:
    index = Params(data).byte() % len(METHODS)
    raw = data[1:]
    path, cls, _ = METHODS[index]
    compiled = decode(index, raw)
    pure = _ask_twin(index, raw)
    if pure[0] == "finding":
        raise Finding(f"pure-Python protobuf: {pure[1]}")
    if compiled[0] != pure[0] and (compiled if compiled[0] == "ok" else pure)[3]:
        pass  # the parsers differ on unknown fields' odd tags (field 0, past the largest number)
    else:
        agree(compiled[:4], pure[:4], f"{path} of {raw!r}", ("upb", "python"))
    if compiled[0] == "ok":
        again = decode(index, compiled[4])
        expect(again == compiled, f"{path}: serialized and parsed again, {raw!r} became {again!r}")


def _op(which: str, request) -> pb.RequestOp:
    return pb.RequestOp(**{which: request})


def seeds() -> list[bytes]:
    """A real request for every method, and Txns as kube-apiserver sends them (compare on
    mod_revision, put or range), nested, with duplicate keys, too many ops."""
    range_req = pb.RangeRequest(key=b"/registry/pods/", range_end=b"/registry/pods0", limit=500,
                                revision=12, serializable=True, keys_only=False)
    put = pb.PutRequest(key=b"/registry/pods/default/p1", value=b"\x6b\x38\x73\x00" + b"v" * 40,
                        lease=7587, prev_kv=True)
    delete = pb.DeleteRangeRequest(key=b"a", range_end=b"\x00", prev_kv=True)
    kube_txn = pb.TxnRequest(
        compare=[pb.Compare(key=put.key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=5)],
        success=[_op("request_put", put)],
        failure=[_op("request_range", pb.RangeRequest(key=put.key))])
    nested = pb.TxnRequest(success=[_op("request_txn", kube_txn), _op("request_delete_range", delete)],
                           failure=[_op("request_txn", pb.TxnRequest(success=[_op("request_put", put)]))])
    duplicate = pb.TxnRequest(success=[_op("request_put", put), _op("request_put", put)])
    too_many = pb.TxnRequest(success=[_op("request_range", range_req)] * (MAX_TXN_OPS + 1))
    by_name = {
        "Range": [range_req, pb.RangeRequest(key=b"k", sort_order=5, sort_target=9)],
        "RangeStream": [range_req, pb.RangeRequest(key=b"k", min_mod_revision=3)],
        "Put": [put, pb.PutRequest(key=b"k", ignore_value=True, value=b"v")],
        "DeleteRange": [delete],
        "Txn": [kube_txn, nested, duplicate, too_many, pb.TxnRequest(success=[pb.RequestOp()])],
        "Compact": [pb.CompactionRequest(revision=100, physical=True)],
        "Watch": [pb.WatchRequest(create_request=pb.WatchCreateRequest(
                      key=b"/registry/", range_end=b"/registry0", start_revision=3, progress_notify=True,
                      filters=[pb.WatchCreateRequest.NOPUT], prev_kv=True, watch_id=7, fragment=True)),
                  pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=7)),
                  pb.WatchRequest(progress_request=pb.WatchProgressRequest())],
        "LeaseGrant": [pb.LeaseGrantRequest(TTL=60, ID=0)],
        "LeaseRevoke": [pb.LeaseRevokeRequest(ID=7587)],
        "LeaseKeepAlive": [pb.LeaseKeepAliveRequest(ID=7587)],
        "LeaseTimeToLive": [pb.LeaseTimeToLiveRequest(ID=7587, keys=True)],
        "MemberAdd": [pb.MemberAddRequest(peerURLs=["http://10.0.0.1:2380"], isLearner=True)],
        "MemberUpdate": [pb.MemberUpdateRequest(ID=1, peerURLs=["http://a:2380", "http://b:2380"])],
        "Alarm": [pb.AlarmRequest(action=pb.AlarmRequest.GET, memberID=1, alarm=pb.NOSPACE)],
        "MoveLeader": [pb.MoveLeaderRequest(targetID=2)],
        "Downgrade": [pb.DowngradeRequest(action=pb.DowngradeRequest.VALIDATE, version="3.5")],
        "HashKV": [pb.HashKVRequest(revision=10)],
    }
    out = []
    for index, (path, cls, _) in enumerate(METHODS):
        for request in by_name.get(path.rsplit("/", 1)[1], [cls()]):
            out.append(bytes([index]) + request.SerializeToString())
    return out


def structured():
    """Requests built field by field: Txns nested a few levels, with keys from a small set
    (so that writes collide), sort options and enum values out of range."""
    from hypothesis import strategies as st

    keys = st.sampled_from([b"", b"a", b"b", b"a\x00", b"\x00", b"\xff"])
    ints = st.integers(-2**63, 2**63 - 1)
    small = st.integers(-3, 12)
    ranges = st.builds(pb.RangeRequest, key=keys, range_end=keys, limit=ints, revision=ints,
                       sort_order=small, sort_target=small, serializable=st.booleans(),
                       keys_only=st.booleans(), count_only=st.booleans(), min_mod_revision=ints)
    puts = st.builds(pb.PutRequest, key=keys, value=st.binary(max_size=8), lease=ints,
                     prev_kv=st.booleans(), ignore_value=st.booleans(), ignore_lease=st.booleans())
    deletes = st.builds(pb.DeleteRangeRequest, key=keys, range_end=keys, prev_kv=st.booleans())
    compares = st.builds(pb.Compare, key=keys, range_end=keys, result=small, target=small,
                         version=ints)

    def ops(children):
        return st.one_of(
            st.just(pb.RequestOp()),
            ranges.map(lambda r: _op("request_range", r)),
            puts.map(lambda r: _op("request_put", r)),
            deletes.map(lambda r: _op("request_delete_range", r)),
            children.map(lambda t: _op("request_txn", t)))

    txns = st.recursive(
        st.builds(pb.TxnRequest, compare=st.lists(compares, max_size=2)),
        lambda children: st.builds(pb.TxnRequest, compare=st.lists(compares, max_size=3),
                                   success=st.lists(ops(children), max_size=4),
                                   failure=st.lists(ops(children), max_size=4)),
        max_leaves=12)
    index = {path.rsplit("/", 1)[1]: i for i, (path, _, _) in enumerate(METHODS)}
    return st.one_of(
        txns.map(lambda t: bytes([index["Txn"]]) + t.SerializeToString()),
        ranges.map(lambda r: bytes([index["Range"]]) + r.SerializeToString()),
        ranges.map(lambda r: bytes([index["RangeStream"]]) + r.SerializeToString()),
        puts.map(lambda r: bytes([index["Put"]]) + r.SerializeToString()),
        deletes.map(lambda r: bytes([index["DeleteRange"]]) + r.SerializeToString()))


if __name__ == "__main__":
    _serve_twin()
