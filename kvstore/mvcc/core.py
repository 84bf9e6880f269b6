"""Picks the compiled MVCC core (ext/mvcc_core.pyx) or its pure-Python twin.

Everything in kvstore takes KeyValue and KeyIndex from here, so one switch
(``KVSTORE_NO_EXT=1``) changes them together.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _ext
from . import (
    history as _py_history,
    key_index as _py_key_index,
    kv as _py_kv,
    ordered_keys as _py_ordered,
    state_codec as _py_codec,
    watch_fanout as _py_fanout,
    wire as _py_wire,
)

_compiled = _ext.compiled("mvcc_core")

if TYPE_CHECKING:
    # mypy reads the types from the compiled module's stub (kvstore/_ext/mvcc_core.pyi); the
    # pure-Python twins have the same API (tests/test_ext_twins.py).
    from .._ext import mvcc_core as codec, mvcc_core as wire
    from .._ext.mvcc_core import (
        History,
        KeyIndex,
        KeyValue,
        OrderedKeys,
        Watcher,
        collect_visible,
        deleted,
        deliver_change,
        encode_records,
        kept_revisions,
    )
elif _compiled is not None:
    KeyValue = _compiled.KeyValue
    KeyIndex = _compiled.KeyIndex
    History = _compiled.History
    OrderedKeys = _compiled.OrderedKeys
    collect_visible = _compiled.collect_visible
    deleted = _compiled.deleted
    kept_revisions = _compiled.kept_revisions
    encode_records = _compiled.encode_records
    deliver_change = _compiled.deliver_change
    Watcher = _compiled.Watcher
    codec = _compiled
    wire = _compiled
else:
    KeyValue = _py_kv.KeyValue
    KeyIndex = _py_key_index.KeyIndex
    History = _py_history.History
    OrderedKeys = _py_ordered.OrderedKeys
    collect_visible = _py_key_index.collect_visible
    deleted = _py_key_index.deleted
    kept_revisions = _py_key_index.kept_revisions
    encode_records = _py_key_index.encode_records
    deliver_change = _py_fanout.deliver_change
    Watcher = _py_fanout.Watcher
    codec = _py_codec  # encode_keys, decode_keys, encode_history, decode_history, decode_state
    wire = _py_wire  # encode_header, range_response, range_stream_response, kv_bytes

COMPILED = _compiled is not None

__all__ = ["KeyValue", "KeyIndex", "Watcher", "History", "OrderedKeys", "collect_visible", "deleted",
           "kept_revisions", "encode_records", "deliver_change", "codec", "wire", "COMPILED"]
