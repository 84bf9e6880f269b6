"""etcd 3.4's backend db (a bbolt file) as kvstore writes and reads it: its snapshots.

The buckets, as etcd 3.4 lays them out:

    key              revision key (main ``_`` sub, ``t`` for a tombstone) -> mvccpb.KeyValue
    meta             consistent_index -> u64; scheduledCompactRev / finishedCompactRev ->
                     the compaction's revision key, once compacted
    lease            lease id (u64) -> leasepb.Lease{ID, TTL}
    members          member id (hex) -> JSON {id, peerURLs, name, clientURLs}
    alarm            marshaled AlarmMember -> empty: the alarms raised
    members_removed: empty here
    cluster          clusterVersion -> "3.4.0"
    auth             authEnabled -> 1 byte (1 enabled, 0 disabled; absent: never enabled);
                     authRevision -> u64 (1: what a new etcd writes)
    authUsers        user name -> authpb.User (bcrypt hash, roles, options)
    authRoles        role name -> authpb.Role (its key permissions)

All integers are big-endian. The revision keys and records are mvcc/backend_view.py's.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Generator, Iterable, Iterator
from typing import NamedTuple

from google.protobuf.message import DecodeError

from ..api import auth_pb2, kv_pb2, rpc_pb2 as pb
from ..bbolt import BoltCorrupt, BoltFile, BoltWriter
from ..mvcc.backend_view import PAUSE, backend_value, parse_revision_key, revision_key
from ..mvcc.core import KeyValue
from ..mvcc.wire import read_varint, varint

KEY = b"key"
META = b"meta"
LEASE = b"lease"
MEMBERS = b"members"
ALARM = b"alarm"
AUTH = b"auth"
AUTH_USERS = b"authUsers"
AUTH_ROLES = b"authRoles"
AUTH_ENABLED = b"authEnabled"  # in AUTH: 1 byte, 1 enabled, 0 disabled
AUTH_REVISION = b"authRevision"  # in AUTH: u64
CONSISTENT_INDEX = b"consistent_index"
SCHEDULED_COMPACT = b"scheduledCompactRev"
FINISHED_COMPACT = b"finishedCompactRev"
CLUSTER_VERSION = b"3.4.0"  # etcd 3.4 records its cluster version as major.minor.0
_U64 = struct.Struct(">Q")
_FLUSH_RECORDS = 4096  # revision records handed to the bbolt writer at a time


class EtcdDbCorrupt(ValueError):
    """The file is not an intact etcd db (bbolt damaged, or its buckets not etcd's)."""


class Member(NamedTuple):
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]


class EtcdDb(NamedTuple):
    """What kvstore takes from an etcd db."""
    revisions: list[tuple[int, int, KeyValue]]  # (main, sub, KeyValue), in (main, sub) order
    current_rev: int
    compact_rev: int  # -1: never compacted
    leases: list[tuple[int, int]]  # (id, granted TTL)
    consistent_index: int
    alarms: list[tuple[int, int]] = []  # (member id, alarm type) raised
    auth: dict | None = None  # users, roles, enabled, revision (as AuthState.dump gives them)


# -- records ------------------------------------------------------------------------------------

def lease_record(lease_id: int, ttl: int) -> tuple[bytes, bytes]:
    """The lease bucket's pair: leasepb.Lease{ID, TTL} (zero fields left out, as gogoproto)."""
    value = b""
    if lease_id:
        value += b"\x08" + varint(lease_id & 0xFFFF_FFFF_FFFF_FFFF)
    if ttl:
        value += b"\x10" + varint(ttl & 0xFFFF_FFFF_FFFF_FFFF)
    return _U64.pack(lease_id & 0xFFFF_FFFF_FFFF_FFFF), value


def parse_lease(value: bytes) -> tuple[int, int]:
    """(ID, TTL) of a leasepb.Lease (its RemainingTTL, field 3, is read past)."""
    fields = {1: 0, 2: 0, 3: 0}
    i = 0
    while i < len(value):
        tag, i = _read_varint(value, i)
        if tag & 7 != 0 or tag >> 3 not in fields:
            raise EtcdDbCorrupt(f"lease record: unexpected field {tag >> 3} (wire type {tag & 7})")
        n, i = _read_varint(value, i)
        fields[tag >> 3] = n - (1 << 64) if n >> 63 else n
    return fields[1], fields[2]


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    try:
        return read_varint(data, i)
    except ValueError:
        raise EtcdDbCorrupt("lease record: a truncated varint") from None


def member_record(m: Member) -> tuple[bytes, bytes]:
    """The members bucket's pair, as etcd's membership store writes it."""
    value = json.dumps({"id": m.id, "peerURLs": m.peer_urls, "name": m.name,
                        "clientURLs": m.client_urls}, separators=(",", ":"))
    return f"{m.id:x}".encode(), value.encode()


def meta_records(consistent_index: int, compact_rev: int) -> list[tuple[bytes, bytes]]:
    records = [(CONSISTENT_INDEX, _U64.pack(consistent_index))]
    if compact_rev > 0:
        rev = revision_key(compact_rev, 0)
        records += [(FINISHED_COMPACT, rev), (SCHEDULED_COMPACT, rev)]
    return records


def auth_buckets(auth: dict | None) -> tuple[list, list, list]:
    """The auth, authRoles and authUsers buckets' records: users and roles by name, as their
    marshaled authpb messages (a new etcd's: revision 1, no authEnabled key)."""
    if not auth:
        return [(AUTH_REVISION, _U64.pack(1))], [], []
    records = [(AUTH_REVISION, _U64.pack(auth["revision"]))]
    if auth["enabled"]:  # (etcd writes the flag when auth is first enabled)
        records.insert(0, (AUTH_ENABLED, b"\x01"))
    roles = sorted((auth_pb2.Role.FromString(r).name, r) for r in auth["roles"])
    users = sorted((auth_pb2.User.FromString(u).name, u) for u in auth["users"])
    return records, roles, users


def _read_auth(db) -> dict | None:
    if db.bucket(AUTH) is None:
        return None
    meta = dict(db.items(AUTH))
    revision = meta.get(AUTH_REVISION, _U64.pack(1))
    if len(revision) != 8:
        raise EtcdDbCorrupt(f"auth authRevision: {len(revision)} bytes, not 8")
    users = [v for _, v in db.items(AUTH_USERS)] if db.bucket(AUTH_USERS) is not None else []
    roles = [v for _, v in db.items(AUTH_ROLES)] if db.bucket(AUTH_ROLES) is not None else []
    try:
        for u in users:
            auth_pb2.User.FromString(u)
        for r in roles:
            auth_pb2.Role.FromString(r)
    except DecodeError as e:
        raise EtcdDbCorrupt(f"auth buckets: {e}") from None
    return {"enabled": meta.get(AUTH_ENABLED) == b"\x01", "revision": _U64.unpack(revision)[0],
            "users": users, "roles": roles}


# -- writing ------------------------------------------------------------------------------------

def write_db(out, revisions: Iterable, leases: Iterable[tuple[int, int]], members: list[Member],
             consistent_index: int, compact_rev: int,
             alarms: Iterable[tuple[int, int]] = (),
             auth: dict | None = None) -> Generator[None, None, int]:
    """Writes the db to ``out`` (seekable); a generator that pauses wherever ``revisions``
    yields PAUSE (mvcc/backend_view.py's ``backend_revisions_in_steps``), so a caller can let
    other work run there. Returns the file's size."""
    w = BoltWriter(out)
    w.put_bucket(ALARM, sorted(
        (pb.AlarmMember(memberID=member, alarm=pb.AlarmType.Name(kind)).SerializeToString(), b"")
        for member, kind in alarms))
    auth_records, roles, users = auth_buckets(auth)
    w.put_bucket(AUTH, auth_records)
    w.put_bucket(AUTH_ROLES, roles)
    w.put_bucket(AUTH_USERS, users)
    w.put_bucket(b"cluster", [(b"clusterVersion", CLUSTER_VERSION)])
    bucket = w.bucket(KEY)
    keys: list[bytes] = []
    values: list[bytes] = []
    for item in revisions:
        if item is PAUSE:
            bucket.add(keys, values)
            keys, values = [], []
            yield
            continue
        main, sub, kv = item
        keys.append(revision_key(main, sub, not kv.version))
        values.append(backend_value(kv))
        if len(keys) >= _FLUSH_RECORDS:
            bucket.add(keys, values)
            keys, values = [], []
    bucket.add(keys, values)
    bucket.finish()
    w.put_bucket(LEASE, sorted(lease_record(i, ttl) for i, ttl in leases))
    w.put_bucket(MEMBERS, sorted(member_record(m) for m in members))
    w.put_bucket(b"members_removed", [])
    w.put_bucket(META, meta_records(consistent_index, compact_rev))
    return w.finish()


# -- reading ------------------------------------------------------------------------------------

def read_db(data) -> EtcdDb:
    """The revisions, leases and compaction of an etcd db's bytes; EtcdDbCorrupt if bbolt
    would refuse the file or its buckets do not hold what etcd writes."""
    try:
        db = BoltFile(data)
        db.check()
        if db.bucket(KEY) is None or db.bucket(META) is None:
            raise EtcdDbCorrupt("not an etcd db: no 'key' or 'meta' bucket")
        meta = dict(db.items(META))
        revisions = list(_revisions(db.items(KEY)))
        leases = [parse_lease(v) for _, v in db.items(LEASE)]
        alarms = [_alarm(k) for k, _ in db.items(ALARM)] if db.bucket(ALARM) is not None else []
        auth = _read_auth(db)
    except BoltCorrupt as e:
        raise EtcdDbCorrupt(str(e)) from None
    compact_rev = -1
    for name in (FINISHED_COMPACT, SCHEDULED_COMPACT):
        # A compaction scheduled but not finished is finished by etcd at its next start.
        if name in meta:
            try:
                compact_rev = max(compact_rev, parse_revision_key(meta[name])[0])
            except ValueError as e:
                raise EtcdDbCorrupt(f"meta {name.decode()}: {e}") from None
    index = meta.get(CONSISTENT_INDEX, bytes(8))
    if len(index) != 8:
        raise EtcdDbCorrupt(f"meta consistent_index: {len(index)} bytes, not 8")
    last = revisions[-1][0] if revisions else 1
    return EtcdDb(revisions, max(last, compact_rev, 1), compact_rev, leases,
                  _U64.unpack(index)[0], alarms, auth)


def _alarm(key: bytes) -> tuple[int, int]:
    try:
        m = pb.AlarmMember.FromString(key)
    except DecodeError:
        raise EtcdDbCorrupt(f"alarm bucket: {key.hex()} is not an AlarmMember") from None
    return m.memberID, m.alarm


def _revisions(records: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[int, int, KeyValue]]:
    for key, value in records:
        try:
            main, sub, tombstone = parse_revision_key(key)
            pb = kv_pb2.KeyValue.FromString(value)
        except Exception as e:  # a bad key, or protobuf's DecodeError
            raise EtcdDbCorrupt(f"key bucket: record {key.hex()}: {e}") from None
        if tombstone:
            yield main, sub, KeyValue.tombstone(pb.key, main)
            continue
        if pb.mod_revision != main or not pb.version or not pb.create_revision:
            raise EtcdDbCorrupt(f"key bucket: record {key.hex()} holds revision "
                                f"{pb.mod_revision}, version {pb.version}")
        yield main, sub, KeyValue(pb.key, pb.create_revision, pb.mod_revision, pb.version,
                                  pb.value, pb.lease)
