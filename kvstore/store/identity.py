"""Who this member is: cluster id, member id and start count, stable across restarts.

The member id is drawn once and kept in the member's storage. Members of one cluster derive
the cluster id from the cluster's name, so they all report the same one; a single member draws
its own. The start count goes up by one at every start: it keeps request ids of one
incarnation apart from the next one's.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from ..log import MemberStorage

_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class Identity:
    cluster_id: int
    member_id: int
    starts: int


def derive_id(text: str, salt: bytes = b"") -> int:
    # Nonzero, 63 bits: some clients print ids as signed.
    digest = hashlib.sha256(text.encode() + salt).digest()
    return (_U64.unpack(digest[:8])[0] & 0x7FFF_FFFF_FFFF_FFFF) or 1


def load_identity(storage: MemberStorage, name: str, cluster_name: str | None = None) -> Identity:
    ids = storage.get_meta("ids")
    if ids is None:
        salt = os.urandom(16) if storage.durable else b""
        ids = _U64.pack(derive_id("cluster/" + name, salt)) + _U64.pack(derive_id("member/" + name, salt))
        storage.put_meta("ids", ids)
    raw = storage.get_meta("starts")
    starts = _U64.unpack(raw)[0] + 1 if raw else 2
    storage.put_meta("starts", _U64.pack(starts))
    cluster_id = (derive_id("cluster/" + cluster_name) if cluster_name is not None
                  else _U64.unpack(ids[:8])[0])
    return Identity(cluster_id, _U64.unpack(ids[8:16])[0], starts)
