"""Encoding and decoding of bbolt's B+tree pages: pure-Python twin of ext/bbolt_pages.pyx.

A page (go.etcd.io/bbolt page.go) is a 16-byte header, ``id u64 | flags u16 | count u16 |
overflow u32``, then ``count`` 16-byte elements, then the elements' keys (and values). A leaf
element is ``flags u32 | pos u32 | ksize u32 | vsize u32``, a branch element ``pos u32 | ksize
u32 | pgid u64``; ``pos`` counts from the element itself to its key, and a leaf's value follows
its key. A page whose elements do not fit in one page size runs on over ``overflow`` more
pages. Everything is little-endian (bbolt writes its structs as amd64 holds them).

Writing packs sorted elements into consecutive pages as bbolt's node.write lays one node out;
reading checks that every element lies inside its page before slicing it.
"""
from __future__ import annotations

import struct

PAGE_HEADER_SIZE = 16
ELEMENT_SIZE = 16
BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF = 0x01  # a leaf element whose value is a bucket

_HEADER = struct.Struct("<QHHI")
_LEAF_ELEMENT = struct.Struct("<IIII")
_BRANCH_ELEMENT = struct.Struct("<IIQ")


def pack_leaf_pages(keys: list[bytes], values: list[bytes], element_flags: int, first_pgid: int,
                    page_size: int, final: bool) -> tuple[bytes, list[int], list[bytes], int]:
    """Leaf pages holding the pairs in order, numbered from ``first_pgid``: (the pages' bytes,
    each page's id, each page's first key, the pairs packed). A page takes pairs while they fit
    in one page size; a pair too big alone gets a page of its own with overflow pages. Unless
    ``final``, the last page, not full yet, is left for the next call (the pairs it would take
    are not counted as packed)."""
    out = bytearray()
    pgids: list[int] = []
    firsts: list[bytes] = []
    n = len(keys)
    start = 0
    pgid = first_pgid
    while start < n:
        size = PAGE_HEADER_SIZE
        end = start
        while end < n:
            grown = size + ELEMENT_SIZE + len(keys[end]) + len(values[end])
            if grown > page_size and end > start:
                break
            size = grown
            end += 1
        if end == n and not final and size <= page_size:
            break  # not full: more pairs may join it
        pages = (size + page_size - 1) // page_size
        base = len(out)
        out += bytes(pages * page_size)
        _HEADER.pack_into(out, base, pgid, LEAF_PAGE, end - start, pages - 1)
        data = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * (end - start)
        for i in range(start, end):
            elem = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * (i - start)
            key, value = keys[i], values[i]
            _LEAF_ELEMENT.pack_into(out, elem, element_flags, data - elem, len(key), len(value))
            out[data:data + len(key)] = key
            data += len(key)
            out[data:data + len(value)] = value
            data += len(value)
        pgids.append(pgid)
        firsts.append(keys[start])
        pgid += pages
        start = end
    return bytes(out), pgids, firsts, start


def pack_branch_pages(keys: list[bytes], pgids: list[int], first_pgid: int,
                      page_size: int) -> tuple[bytes, list[int], list[bytes]]:
    """Branch pages pointing at the children (``keys[i]`` the first key under ``pgids[i]``), in
    order, numbered from ``first_pgid``: (the pages' bytes, each page's id, its first key)."""
    out = bytearray()
    page_ids: list[int] = []
    firsts: list[bytes] = []
    n = len(keys)
    start = 0
    pgid = first_pgid
    while start < n:
        size = PAGE_HEADER_SIZE
        end = start
        while end < n:
            grown = size + ELEMENT_SIZE + len(keys[end])
            if grown > page_size and end > start:
                break
            size = grown
            end += 1
        pages = (size + page_size - 1) // page_size
        base = len(out)
        out += bytes(pages * page_size)
        _HEADER.pack_into(out, base, pgid, BRANCH_PAGE, end - start, pages - 1)
        data = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * (end - start)
        for i in range(start, end):
            elem = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * (i - start)
            key = keys[i]
            _BRANCH_ELEMENT.pack_into(out, elem, data - elem, len(key), pgids[i])
            out[data:data + len(key)] = key
            data += len(key)
        page_ids.append(pgid)
        firsts.append(keys[start])
        pgid += pages
        start = end
    return bytes(out), page_ids, firsts


def page_header(buf, offset: int) -> tuple[int, int, int, int]:
    """(id, flags, count, overflow) of the page at ``offset``."""
    if offset < 0 or offset + PAGE_HEADER_SIZE > len(buf):
        raise ValueError(f"page header at {offset} lies past the end ({len(buf)} bytes)")
    return _HEADER.unpack_from(buf, offset)


def read_leaf(buf, offset: int, end: int) -> list[tuple[int, bytes, bytes]]:
    """(flags, key, value) of each element of the leaf page at ``offset``, whose bytes end at
    ``end``; ValueError if an element or its data lies outside."""
    _, flags, count, _ = page_header(buf, offset)
    end = min(end, len(buf))
    if not flags & LEAF_PAGE:
        raise ValueError(f"page at {offset} is not a leaf page (flags {flags:#x})")
    if offset + PAGE_HEADER_SIZE + ELEMENT_SIZE * count > end:
        raise ValueError(f"leaf page at {offset}: {count} elements overrun the page")
    out = []
    for i in range(count):
        elem = offset + PAGE_HEADER_SIZE + ELEMENT_SIZE * i
        eflags, pos, ksize, vsize = _LEAF_ELEMENT.unpack_from(buf, elem)
        k = elem + pos
        if k + ksize + vsize > end:
            raise ValueError(f"leaf page at {offset}: element {i} lies outside the page")
        out.append((eflags, bytes(buf[k:k + ksize]), bytes(buf[k + ksize:k + ksize + vsize])))
    return out


def read_branch(buf, offset: int, end: int) -> list[tuple[bytes, int]]:
    """(key, child page id) of each element of the branch page at ``offset`` (ending at
    ``end``); ValueError if an element or its key lies outside."""
    _, flags, count, _ = page_header(buf, offset)
    end = min(end, len(buf))
    if not flags & BRANCH_PAGE:
        raise ValueError(f"page at {offset} is not a branch page (flags {flags:#x})")
    if offset + PAGE_HEADER_SIZE + ELEMENT_SIZE * count > end:
        raise ValueError(f"branch page at {offset}: {count} elements overrun the page")
    out = []
    for i in range(count):
        elem = offset + PAGE_HEADER_SIZE + ELEMENT_SIZE * i
        pos, ksize, pgid = _BRANCH_ELEMENT.unpack_from(buf, elem)
        k = elem + pos
        if k + ksize > end:
            raise ValueError(f"branch page at {offset}: element {i} lies outside the page")
        out.append((bytes(buf[k:k + ksize]), pgid))
    return out
