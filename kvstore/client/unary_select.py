"""Picks the compiled receive path of unary calls (ext/unary_client.pyx) or its pure-Python
twins (unary.UnaryCall and unary.start_unary, receive.receive and
receive.window_updates_due).

``KVSTORE_NO_EXT=1`` selects the pure twins. The compiled receive loop calls a compiled
UnaryCall's methods directly, any other handler through its Python methods.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _ext
from . import receive as _py_receive, unary as _py_unary

_c = _ext.compiled("unary_client")

if TYPE_CHECKING:
    # mypy reads the types from the compiled module's stub (kvstore/_ext/unary_client.pyi);
    # the pure-Python twins have the same API.
    from .._ext.unary_client import UnaryCall, receive, start_unary, window_updates_due
elif _c is not None:
    UnaryCall = _c.UnaryCall
    start_unary = _c.start_unary
    receive = _c.receive
    window_updates_due = _c.window_updates_due
else:
    UnaryCall = _py_unary.UnaryCall
    start_unary = _py_unary.start_unary
    receive = _py_receive.receive
    window_updates_due = _py_receive.window_updates_due

COMPILED = _c is not None

__all__ = ["UnaryCall", "start_unary", "receive", "window_updates_due", "COMPILED"]
