"""The copy: the source's state at one revision, into a new data dir.

It is the source's own snapshot (Maintenance.Snapshot: etcd's db file, hashed), restored as
``kvstore restore`` restores one: every key with its create and mod revisions, version and
lease, the history the source still holds, its compaction and its leases. One consistent view,
whatever writes go on meanwhile, and no compaction can overtake it while it streams.

A marker file in the data dir says where the copy came from and at which revision; a later
``kvstore migrate`` on the same dir resumes following instead of copying again.
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from ..client import Client
from ..store.etcd_restore import Restored, restore

MARKER = "migrated-from.json"


class MigrationRefused(Exception):
    """The data dir cannot take a copy (one line says why)."""


def read_marker(data_dir: str | os.PathLike) -> dict | None:
    """What the marker says ({"source": ..., "copied_at": revision}); None without one."""
    try:
        return json.loads((Path(data_dir) / MARKER).read_text())
    except FileNotFoundError:
        return None


def _check_new(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise MigrationRefused(f"data dir {target} is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)


async def copy_from(client: Client, data_dir: str | os.PathLike, source: str) -> Restored:
    """Copies the source ``client`` talks to into ``data_dir`` (new, or empty)."""
    target = Path(data_dir)
    _check_new(target)
    fd, tmp = tempfile.mkstemp(prefix=".etcd-snapshot-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in client.snapshot():
                f.write(chunk.blob)
        # restore() runs an event loop of its own: on a thread, beside this one
        restored = await asyncio.get_running_loop().run_in_executor(None, restore, tmp, target)
    finally:
        os.unlink(tmp)
    marker = target / MARKER
    marker.write_text(json.dumps({"source": source, "copied_at": restored.revision}) + "\n")
    return restored
