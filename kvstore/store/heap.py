"""Hands freed heap memory back to the system.

A snapshot encodes hundreds of MB (with a million keys), a slice at a time, and frees each
slice once written. glibc keeps freed memory in the process for reuse, and after large frees
its dynamic mmap threshold puts the next big buffers on the heap too, so without a trim the
resident size can stay at a snapshot's peak. ``malloc_trim`` returns the free pages; elsewhere (not glibc)
this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

try:
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    _malloc_trim.argtypes = [ctypes.c_size_t]
    _malloc_trim.restype = ctypes.c_int
except (OSError, AttributeError):
    _malloc_trim = None


def release_free_memory() -> bool:
    """True if some memory was returned to the system."""
    return bool(_malloc_trim(0)) if _malloc_trim is not None else False
