"""Who this member is: cluster id, member id and term, stable across restarts.

Ids are drawn once and kept in the log's metadata; the term goes up by one at every start,
as an etcd member's raft term does after each election it wins.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from ..log import Log

_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class Identity:
    cluster_id: int
    member_id: int
    term: int


def _draw_id(name: str, salt: bytes) -> int:
    # Nonzero, 63 bits: some clients print ids as signed.
    digest = hashlib.sha256(name.encode() + salt).digest()
    return (_U64.unpack(digest[:8])[0] & 0x7FFF_FFFF_FFFF_FFFF) or 1


def load_identity(wal: Log, name: str) -> Identity:
    import os

    ids = wal.get_meta("ids")
    if ids is None:
        salt = os.urandom(16) if wal.durable else b""
        ids = _U64.pack(_draw_id("cluster/" + name, salt)) + _U64.pack(_draw_id("member/" + name, salt))
        wal.put_meta("ids", ids)
    raw_term = wal.get_meta("term")
    term = _U64.unpack(raw_term)[0] + 1 if raw_term else 2
    wal.put_meta("term", _U64.pack(term))
    return Identity(_U64.unpack(ids[:8])[0], _U64.unpack(ids[8:16])[0], term)
