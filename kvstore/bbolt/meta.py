"""bbolt's meta page: where a reader starts (go.etcd.io/bbolt db.go ``meta``).

Pages 0 and 1 each hold one, after the page header: ``magic u32 | version u32 | page size u32 |
flags u32 | root bucket (root pgid u64, sequence u64) | freelist pgid u64 | high water mark
pgid u64 | txid u64 | checksum u64``. The checksum is FNV-64a over the fields before it. A
reader takes the valid meta with the higher txid; a writer writes both, meta 1 one txid behind
(bbolt's Tx.WriteTo, which etcd's snapshots come from).
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from .page_codec import META_PAGE, PAGE_HEADER_SIZE

MAGIC = 0xED0CDAED
VERSION = 2
NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF  # bbolt's pgidNoFreelist (NoFreelistSync)

_FIELDS = struct.Struct("<IIIIQQQQQ")  # up to the checksum
_CHECKSUM = struct.Struct("<Q")
_PAGE_HEADER = struct.Struct("<QHHI")
SIZE = _FIELDS.size + _CHECKSUM.size


class MetaInvalid(ValueError):
    """A meta page that bbolt would not open."""


class Meta(NamedTuple):
    page_size: int
    root: int  # the root bucket's page
    freelist: int  # the freelist's page (NO_FREELIST: none written)
    pgid: int  # the high water mark: pages in use, the file's length in pages
    txid: int
    flags: int = 0
    sequence: int = 0  # the root bucket's sequence


def fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFF_FFFF_FFFF_FFFF
    return h


def encode_page(meta: Meta, page_id: int) -> bytes:
    """The whole meta page ``page_id`` (0 or 1), padded to the page size."""
    fields = _FIELDS.pack(MAGIC, VERSION, meta.page_size, meta.flags, meta.root, meta.sequence,
                          meta.freelist, meta.pgid, meta.txid)
    page = (_PAGE_HEADER.pack(page_id, META_PAGE, 0, 0) + fields
            + _CHECKSUM.pack(fnv64a(fields)))
    return page + bytes(meta.page_size - len(page))


def decode(buf, offset: int) -> Meta:
    """The meta of the page at ``offset``; MetaInvalid if bbolt would refuse it."""
    start = offset + PAGE_HEADER_SIZE
    if start + SIZE > len(buf):
        raise MetaInvalid("truncated meta page")
    fields = bytes(buf[start:start + _FIELDS.size])
    magic, version, page_size, flags, root, seq, freelist, pgid, txid = _FIELDS.unpack(fields)
    if magic != MAGIC:
        raise MetaInvalid("invalid database (bad magic)")
    if version != VERSION:
        raise MetaInvalid(f"version mismatch: {version}, not {VERSION}")
    (checksum,) = _CHECKSUM.unpack_from(buf, start + _FIELDS.size)
    if checksum != fnv64a(fields):
        raise MetaInvalid("checksum error")
    return Meta(page_size, root, freelist, pgid, txid, flags, seq)
