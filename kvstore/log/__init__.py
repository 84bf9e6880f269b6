"""Pluggable logs, chosen by the scheme of a log URL (kine's factory pattern): one module per
backend behind the interfaces in base.py.

    memory://              nothing survives the process (tests, benchmarks)
    lmdb://                the embedded default: an LMDB log in the member's data dir
    nats://h1:4222,h2:4222 a NATS JetStream stream shared by the members of a cluster

A bare scheme ("lmdb", "memory") is taken as its URL; "jetstream" names the nats scheme.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

from .base import (
    BARRIER,
    Cluster,
    DataDirCorrupt,
    LeaderRequests,
    LogFull,
    LogUnavailable,
    MemberInfo,
    MemberStorage,
    SharedLog,
    Trimmed,
)
from .storage import DataDirInUse, DirStorage, MemoryStorage


class Backend(NamedTuple):
    log: SharedLog
    storage: MemberStorage
    # What members of a shared log do through it besides the log (election, membership, the
    # leader link, shared snapshots); None for a single member.
    cluster: Cluster | None = None


def _memory(address: str, data_dir, options: dict) -> Backend:
    from .memory import MemoryLog
    return Backend(MemoryLog(), MemoryStorage())


def _lmdb(address: str, data_dir, options: dict) -> Backend:
    data_dir = address or data_dir
    if not data_dir:
        raise ValueError("the lmdb log needs a data directory")
    storage = DirStorage(data_dir)  # locks the dir first
    from .lmdb import LmdbLog
    try:
        return Backend(LmdbLog(data_dir), storage)
    except BaseException:
        storage.unlock()
        raise


def _nats(address: str, data_dir, options: dict) -> Backend:
    if not data_dir:
        raise ValueError("a jetstream member needs a data directory for its snapshots")
    storage = DirStorage(data_dir)
    from .jetstream.cluster import JetStreamCluster
    from .jetstream.log import JetStreamLog
    wal = JetStreamLog(address.split(","), **options)
    return Backend(wal, storage, JetStreamCluster(wal))


OPENERS: dict[str, Callable[[str, Any, dict], Backend]] = {
    "memory": _memory, "lmdb": _lmdb, "nats": _nats}
ALIASES = {"jetstream": "nats"}
BACKENDS = ("lmdb", "memory", "jetstream")


def parse_log_url(value: str) -> tuple[str, str]:
    """(scheme, address) of a log URL or bare backend name."""
    scheme, sep, address = value.partition("://")
    scheme = ALIASES.get(scheme, scheme)
    if scheme not in OPENERS:
        raise ValueError(f"unknown log backend {value!r} "
                         f"(choose from {', '.join(BACKENDS)}, or a nats:// URL)")
    if scheme == "nats" and sep:
        # nats://h1:4222,h2:4222 -> every server gets its scheme back
        address = ",".join(a if "://" in a else f"nats://{a}" for a in address.split(","))
    return scheme, address


def open_backend(value: str, data_dir: str | os.PathLike | None = None, **options) -> Backend:
    scheme, address = parse_log_url(value)
    return OPENERS[scheme](address, data_dir, options)


__all__ = ["BARRIER", "Backend", "BACKENDS", "Cluster", "DataDirCorrupt", "DataDirInUse", "LeaderRequests",
           "LogFull", "LogUnavailable", "MemberInfo", "MemberStorage", "SharedLog", "Trimmed", "open_backend",
           "parse_log_url"]
