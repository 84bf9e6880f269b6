"""Picks the compiled write-ahead writer (ext/wal_writer.pyx, a thread that never takes the GIL)
or its pure-Python twin (wal_writer.py); ``KVSTORE_NO_EXT=1`` selects the twin."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _ext
from . import wal_writer as _py_wal_writer

_c = _ext.compiled("wal_writer")

if TYPE_CHECKING:
    # mypy reads the types from the compiled module's stub (kvstore/_ext/wal_writer.pyi); the
    # pure-Python twin has the same API.
    from .._ext.wal_writer import OK, SYNC_FAILED, WRITE_FAILED, WRITE_SHORT, WalWriter
elif _c is not None:
    WalWriter = _c.WalWriter
    OK, WRITE_FAILED, WRITE_SHORT, SYNC_FAILED = _c.OK, _c.WRITE_FAILED, _c.WRITE_SHORT, _c.SYNC_FAILED
else:
    WalWriter = _py_wal_writer.WalWriter
    OK, WRITE_FAILED = _py_wal_writer.OK, _py_wal_writer.WRITE_FAILED
    WRITE_SHORT, SYNC_FAILED = _py_wal_writer.WRITE_SHORT, _py_wal_writer.SYNC_FAILED

COMPILED = _c is not None

__all__ = ["WalWriter", "OK", "WRITE_FAILED", "WRITE_SHORT", "SYNC_FAILED", "COMPILED"]
