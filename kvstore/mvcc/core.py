"""Picks the compiled MVCC core (ext/mvcc_core.pyx) or its pure-Python twin.

Everything in kvstore takes KeyValue and KeyIndex from here, so one switch
(``KVSTORE_NO_EXT=1``) changes them together.
"""
from __future__ import annotations

from .. import _ext
from . import history as _py_history, key_index as _py_key_index, kv as _py_kv
from . import ordered_keys as _py_ordered, state_codec as _py_codec, wire as _py_wire

_compiled = _ext.compiled("mvcc_core")

if _compiled is not None:
    KeyValue = _compiled.KeyValue
    KeyIndex = _compiled.KeyIndex
    History = _compiled.History
    OrderedKeys = _compiled.OrderedKeys
    collect_visible = _compiled.collect_visible
    codec = _compiled
    wire = _compiled
else:
    KeyValue = _py_kv.KeyValue
    KeyIndex = _py_key_index.KeyIndex
    History = _py_history.History
    OrderedKeys = _py_ordered.OrderedKeys
    collect_visible = _py_key_index.collect_visible
    codec = _py_codec  # encode_keys, decode_keys, encode_history, decode_history
    wire = _py_wire  # encode_header, range_response, range_stream_response, kv_bytes

COMPILED = _compiled is not None

__all__ = ["KeyValue", "KeyIndex", "History", "OrderedKeys", "collect_visible", "codec", "wire", "COMPILED"]
