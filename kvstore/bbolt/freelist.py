"""bbolt's freelist page: the ids of pages free for reuse (go.etcd.io/bbolt freelist.go).

The ids follow the page header as u64s, sorted; the header's count holds their number, or
0xFFFF with the real number in the first u64 when there are that many or more.
"""
from __future__ import annotations

import struct

from .page_codec import FREELIST_PAGE, PAGE_HEADER_SIZE, page_header

_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<QHHI")
_MANY = 0xFFFF


def encode_page(free_ids: list[int], page_id: int, page_size: int) -> bytes:
    """The freelist page(s) ``page_id`` listing ``free_ids``, padded to whole pages."""
    ids = sorted(free_ids)
    if len(ids) < _MANY:
        count, body = len(ids), b"".join(_U64.pack(i) for i in ids)
    else:
        count, body = _MANY, _U64.pack(len(ids)) + b"".join(_U64.pack(i) for i in ids)
    size = PAGE_HEADER_SIZE + len(body)
    pages = (size + page_size - 1) // page_size
    header = _HEADER.pack(page_id, FREELIST_PAGE, count, pages - 1)
    return header + body + bytes(pages * page_size - size)


def decode_page(buf, offset: int, end: int) -> list[int]:
    """The free page ids of the freelist page at ``offset`` (whose bytes end at ``end``)."""
    _, flags, count, _ = page_header(buf, offset)
    if not flags & FREELIST_PAGE:
        raise ValueError(f"page at {offset} is not a freelist page (flags {flags:#x})")
    start = offset + PAGE_HEADER_SIZE
    if count == _MANY:
        if start + 8 > end:
            raise ValueError("freelist page truncated")
        (count,) = _U64.unpack_from(buf, start)
        start += 8
    if start + 8 * count > min(end, len(buf)):
        raise ValueError(f"freelist page at {offset}: {count} ids overrun the page")
    return list(struct.unpack_from(f"<{count}Q", buf, start))
