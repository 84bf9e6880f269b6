"""Picks the compiled HPACK codec (ext/hpack.pyx) or its pure-Python twin (hpack.py).

The connection takes Encoder, Decoder and HPACKError from here; ``KVSTORE_NO_EXT=1`` selects
the pure twin. HPACKError is one class either way (the compiled module re-exports it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _ext
from . import hpack as _py_hpack

_c = _ext.compiled("hpack")

if TYPE_CHECKING:
    # mypy reads the types from the compiled module's stub (kvstore/_ext/hpack.pyi); the
    # pure-Python twin has the same API.
    from .._ext.hpack import Decoder, Encoder, HPACKError
elif _c is not None:
    Encoder = _c.Encoder
    Decoder = _c.Decoder
    HPACKError = _c.HPACKError
else:
    Encoder = _py_hpack.Encoder
    Decoder = _py_hpack.Decoder
    HPACKError = _py_hpack.HPACKError

COMPILED = _c is not None

__all__ = ["Encoder", "Decoder", "HPACKError", "COMPILED"]
