"""Compiled hot paths (built from ext/*.pyx) and the switch that turns them off.

``KVSTORE_NO_EXT=1`` selects the pure-Python twins everywhere; the test suite runs both.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

DISABLED = os.environ.get("KVSTORE_NO_EXT", "") not in ("", "0")


def compiled(name: str) -> ModuleType | None:
    """The compiled module ``kvstore._ext.<name>``, or None when disabled or not built."""
    if DISABLED:
        return None
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        return None
