"""An etcd snapshot (its db file) made into a new kvstore data dir: ``kvstore restore``.

The file is what ``etcdctl snapshot save`` writes: etcd's bbolt db, with the SHA-256 of it
appended (checked here, as ``etcdctl snapshot restore`` checks it), or a db file copied from an
etcd data dir (no hash). Its revisions become the MVCC state (mvcc/backend_view.py), with each
key's create and mod revisions, versions and leases; its compaction stays a compaction. The
state is written as the data dir's first snapshot, at log index 0: the member starts from it,
with an empty log after it. Leases come back with their full TTL, as etcd's restore gives them.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from ..log import DirStorage
from ..mvcc import MVCCStore
from ..mvcc.backend_view import mvcc_from_revisions
from .etcd_db import EtcdDbCorrupt, read_db
from .snapshot import Capture

_SHA256_SIZE = 32


class RestoreRefused(Exception):
    """The file or the data dir cannot be restored from or into (one line says why)."""


class Restored(NamedTuple):
    revision: int
    compact_revision: int
    keys: int  # live keys
    revisions: int  # records of the key bucket
    leases: int
    hash_checked: bool


def db_bytes(data: bytes) -> tuple[memoryview, bool]:
    """The db without its SHA-256 trailer (not a copy), and whether it had one; RestoreRefused
    if the hash does not match. etcdctl tells a trailer by the size: a db is whole pages (a
    multiple of 512 bytes), so 32 bytes past one is the hash."""
    if len(data) % 512 != _SHA256_SIZE:
        return memoryview(data), False
    db, digest = memoryview(data)[:-_SHA256_SIZE], data[-_SHA256_SIZE:]
    if hashlib.sha256(db).digest() != digest:
        raise RestoreRefused(f"damaged: the SHA-256 at its end is {digest.hex()}, the db's is "
                             f"{hashlib.sha256(db).hexdigest()}")
    return db, True


def restore(path: str | os.PathLike, data_dir: str | os.PathLike) -> Restored:
    """Restores the etcd snapshot at ``path`` into ``data_dir``, which must be new or empty
    (runs its own event loop: the data dir's storage writes snapshots from one)."""
    target = Path(data_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RestoreRefused(f"data dir {target} is not empty")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RestoreRefused(f"{path}: {e.strerror or e}") from None
    db, hashed = db_bytes(data)
    try:
        etcd = read_db(db)
        mvcc = mvcc_from_revisions(etcd.revisions, etcd.current_rev, etcd.compact_rev)
    except (EtcdDbCorrupt, ValueError) as e:
        raise RestoreRefused(f"damaged: {e}") from None
    leases = [[lease_id, ttl] for lease_id, ttl in etcd.leases]
    asyncio.run(_save(target, mvcc, leases, [list(alarm) for alarm in etcd.alarms], etcd.auth))
    live = sum(1 for ki in mvcc.index.all() if ki.current() is not None)
    return Restored(mvcc.current_rev, mvcc.compact_rev, live, len(etcd.revisions), len(leases),
                    hashed)


async def _save(data_dir: Path, mvcc: MVCCStore, leases: list, alarms: list,
                auth: dict | None) -> None:
    storage = DirStorage(data_dir)
    try:
        capture = Capture(mvcc, leases, index=0, alarms=alarms, auth=auth)
        await storage.save_snapshot(0, capture.parts(lambda: mvcc))
    finally:
        await storage.close()
