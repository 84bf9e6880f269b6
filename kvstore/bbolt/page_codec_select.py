"""Picks the compiled page codec (ext/bbolt_pages.pyx) or its pure-Python twin (page_codec.py);
``KVSTORE_NO_EXT=1`` selects the twin. Both have the same API (tests/test_bbolt.py compares
them)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _ext
from . import page_codec as _py

_c = _ext.compiled("bbolt_pages")

if TYPE_CHECKING:
    from .._ext.bbolt_pages import pack_branch_pages, pack_leaf_pages, read_branch, read_leaf
elif _c is not None:
    pack_leaf_pages = _c.pack_leaf_pages
    pack_branch_pages = _c.pack_branch_pages
    read_leaf = _c.read_leaf
    read_branch = _c.read_branch
else:
    pack_leaf_pages = _py.pack_leaf_pages
    pack_branch_pages = _py.pack_branch_pages
    read_leaf = _py.read_leaf
    read_branch = _py.read_branch

COMPILED = _c is not None

__all__ = ["pack_leaf_pages", "pack_branch_pages", "read_leaf", "read_branch", "COMPILED"]
