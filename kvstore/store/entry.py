"""Log entries and the records that carry them.

An entry is one request, as etcd's raft log carries an InternalRaftRequest: apply decodes it
and runs it against the state, so every member (and a restart) repeats exactly what the live
path did. Each entry is named by the member that proposed it and a request id of that member,
so the proposer can answer its client when the entry comes back from the log, whoever
appended what came before it (etcd's pkg/wait).

A record is what one log append carries: the entries one group commit took, all from one
member, with consecutive request ids. Its layout:

    version (1) | member id (u64) | first request id (u64) | entries

and each entry: kind and length (u8, u32) | the request's protobuf message.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

from ..api import rpc_pb2 as pb

PUT = 0x50  # "P"
DELETE_RANGE = 0x44  # "D"
TXN = 0x54  # "T"
COMPACT = 0x43  # "C"
LEASE_GRANT = 0x47  # "G"
LEASE_REVOKE = 0x52  # "R"
# A lease past its deadline, revoked by the member that owned expiry in a term: applied only
# while that term is current, so a member that lost ownership cannot expire a lease the new
# owner has renewed.
LEASE_EXPIRE = 0x58  # "X"
# A member won the election for lease expiry: from this entry on, it is the leader of the term.
LEADER = 0x4C  # "L"
# An alarm request (GET, ACTIVATE, DEACTIVATE): alarms are replicated state, as in etcd.
ALARM = 0x41  # "A"

# A change of users, roles or permissions, or auth enabled or disabled (AuthChange).
AUTH = 0x55  # "U"
# A client authenticated: every member learns its token (Authenticate).
AUTHENTICATE = 0x4B  # "K"
# A client's write while auth is enabled: who asked, at which auth revision, and the write
# (AsUser); apply checks the permission against the state it applies to.
AS_USER = 0x49  # "I"

_TWO_U64 = struct.Struct(">QQ")


class LeaseExpire(NamedTuple):
    lease_id: int
    term: int  # the term of the leader that saw the deadline pass

    def SerializeToString(self) -> bytes:  # noqa: N802 - the protobuf messages' name
        return _TWO_U64.pack(self.lease_id, self.term)

    @classmethod
    def FromString(cls, data) -> LeaseExpire:  # noqa: N802
        return cls(*_TWO_U64.unpack(data))


class Leader(NamedTuple):
    member_id: int
    term: int

    def SerializeToString(self) -> bytes:  # noqa: N802
        return _TWO_U64.pack(self.member_id, self.term)

    @classmethod
    def FromString(cls, data) -> Leader:  # noqa: N802
        return cls(*_TWO_U64.unpack(data))


# The Auth requests an AUTH entry carries, by their number in it (append only).
AUTH_METHODS: tuple[tuple[str, type[Any]], ...] = (
    ("AuthEnable", pb.AuthEnableRequest),
    ("AuthDisable", pb.AuthDisableRequest),
    ("UserAdd", pb.AuthUserAddRequest),
    ("UserDelete", pb.AuthUserDeleteRequest),
    ("UserChangePassword", pb.AuthUserChangePasswordRequest),
    ("UserGrantRole", pb.AuthUserGrantRoleRequest),
    ("UserRevokeRole", pb.AuthUserRevokeRoleRequest),
    ("UserGet", pb.AuthUserGetRequest),
    ("UserList", pb.AuthUserListRequest),
    ("RoleAdd", pb.AuthRoleAddRequest),
    ("RoleGet", pb.AuthRoleGetRequest),
    ("RoleList", pb.AuthRoleListRequest),
    ("RoleDelete", pb.AuthRoleDeleteRequest),
    ("RoleGrantPermission", pb.AuthRoleGrantPermissionRequest),
    ("RoleRevokePermission", pb.AuthRoleRevokePermissionRequest),
    ("AuthStatus", pb.AuthStatusRequest),
)
_AUTH_METHOD_NUMBERS = {name: i for i, (name, _) in enumerate(AUTH_METHODS)}


class AuthChange(NamedTuple):
    method: str  # the Auth service's method name
    request: Any

    def SerializeToString(self) -> bytes:  # noqa: N802
        return bytes([_AUTH_METHOD_NUMBERS[self.method]]) + self.request.SerializeToString()

    @classmethod
    def FromString(cls, data) -> AuthChange:  # noqa: N802
        if not data or data[0] >= len(AUTH_METHODS):
            raise CorruptRecord("unknown auth request in a log entry")
        method, message = AUTH_METHODS[data[0]]
        return cls(method, message.FromString(bytes(data[1:])))


_AUTHENTICATE_HEAD = struct.Struct(">H")


class Authenticate(NamedTuple):
    name: str
    token_prefix: str  # the random part of the simple token; the entry's log index completes it

    def SerializeToString(self) -> bytes:  # noqa: N802
        name = self.name.encode()
        return _AUTHENTICATE_HEAD.pack(len(name)) + name + self.token_prefix.encode()

    @classmethod
    def FromString(cls, data) -> Authenticate:  # noqa: N802
        data = bytes(data)
        (n,) = _AUTHENTICATE_HEAD.unpack_from(data)
        end = _AUTHENTICATE_HEAD.size + n
        return cls(data[_AUTHENTICATE_HEAD.size:end].decode(), data[end:].decode())


_AS_USER_HEAD = struct.Struct(">QBH")


class AsUser(NamedTuple):
    username: str
    revision: int  # the auth revision the caller's token was checked at
    kind: int
    request: Any

    def SerializeToString(self) -> bytes:  # noqa: N802
        name = self.username.encode()
        return (_AS_USER_HEAD.pack(self.revision, self.kind, len(name)) + name
                + self.request.SerializeToString())

    @classmethod
    def FromString(cls, data) -> AsUser:  # noqa: N802
        data = bytes(data)
        revision, kind, n = _AS_USER_HEAD.unpack_from(data)
        start = _AS_USER_HEAD.size
        message = MESSAGES.get(kind)
        if message is None or kind == AS_USER:
            raise CorruptRecord(f"log entry kind {kind} cannot be a user's")
        return cls(data[start:start + n].decode(), revision, kind,
                   message.FromString(data[start + n:]))


MESSAGES: dict[int, type[Any]] = {  # each with FromString
    PUT: pb.PutRequest,
    DELETE_RANGE: pb.DeleteRangeRequest,
    TXN: pb.TxnRequest,
    COMPACT: pb.CompactionRequest,
    LEASE_GRANT: pb.LeaseGrantRequest,
    LEASE_REVOKE: pb.LeaseRevokeRequest,
    LEASE_EXPIRE: LeaseExpire,
    LEADER: Leader,
    ALARM: pb.AlarmRequest,
    AUTH: AuthChange,
    AUTHENTICATE: Authenticate,
    AS_USER: AsUser,
}

RECORD_VERSION = 1
_HEADER = struct.Struct(">BQQ")
_ENTRY_HEAD = struct.Struct(">BI")  # a fixed head: packing it costs less than a varint
HEADER_SIZE = _HEADER.size
ENTRY_HEAD_SIZE = _ENTRY_HEAD.size


class CorruptRecord(ValueError):
    pass


def encode_entry(kind: int, body: bytes) -> bytes:
    """One entry: kind, length, the request's message."""
    return _ENTRY_HEAD.pack(kind, len(body)) + body


def encode_record(member_id: int, first_request_id: int, entries: list[bytes]) -> bytes:
    return b"".join([_HEADER.pack(RECORD_VERSION, member_id, first_request_id), *entries])


def record_origin(record: bytes) -> tuple[int, int]:
    """(member id, first request id) of a record."""
    version, member_id, first = _HEADER.unpack_from(record)
    if version != RECORD_VERSION:
        raise CorruptRecord(f"log record version {version} is not {RECORD_VERSION}")
    return member_id, first


def record_entries(record: bytes) -> Iterator[tuple[int, memoryview]]:
    """(kind, message bytes) of every entry in a record, in order."""
    view = memoryview(record)
    pos, end = HEADER_SIZE, len(record)
    head = _ENTRY_HEAD
    while pos < end:
        if pos + head.size > end:
            raise CorruptRecord("log record ends inside an entry's head")
        kind, size = head.unpack_from(record, pos)
        pos += head.size
        if pos + size > end:
            raise CorruptRecord("log record ends inside an entry")
        yield kind, view[pos:pos + size]
        pos += size


def decode_request(kind: int, body) -> object:
    message = MESSAGES.get(kind)
    if message is None:
        raise CorruptRecord(f"unknown log entry kind {kind:#x}")
    return message.FromString(body)
