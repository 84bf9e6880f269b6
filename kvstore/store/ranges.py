"""The API's range conventions, translated for the MVCC index."""
from __future__ import annotations


def range_end(end: bytes) -> bytes | None:
    """Empty: the single key (None). "\\0": every key >= key (b""). Otherwise [key, end)."""
    if not end:
        return None
    if end == b"\x00":
        return b""
    return end
