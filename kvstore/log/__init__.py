"""Pluggable logs: the write path's source of truth. One module per backend."""
from __future__ import annotations

import os

from .base import Log

BACKENDS = ("memory", "lmdb")


def open_log(backend: str, data_dir: str | os.PathLike | None = None) -> Log:
    if backend == "memory":
        from .memory import MemoryLog
        return MemoryLog()
    if backend == "lmdb":
        if data_dir is None:
            raise ValueError("the lmdb log needs a data directory")
        from .lmdb import LmdbLog
        return LmdbLog(data_dir)
    raise ValueError(f"unknown log backend {backend!r} (choose from {', '.join(BACKENDS)})")


__all__ = ["Log", "open_log", "BACKENDS"]
