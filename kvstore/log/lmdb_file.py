"""What an LMDB data file must be, read from its two meta pages before it is mapped.

LMDB maps the file and reads pages in place: a page past the end of a truncated file is a
SIGBUS, which kills the process with no word. Each meta page records its transaction's last
page; the newer one says how long the file must be, so a short file is refused first.

Meta page (LMDB's MDB_meta, 64-bit): a 16-byte page header, then u32 magic, u32 version, the
map address and size, two 48-byte MDB_db records (the first one's leading u32 is the page
size), u64 last page, u64 transaction id.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

from .base import DataDirCorrupt

MAGIC = 0xBEEFC0DE
VERSION = 1
_MAGIC_VERSION = struct.Struct("<II")  # at 16
_PAGE_SIZE = struct.Struct("<I")  # at 40
_LAST_PAGE_TXN = struct.Struct("<QQ")  # at 136
_META_BYTES = 152


class MetaPage(NamedTuple):
    page_size: int
    last_page: int
    txn_id: int


def _meta_page(head: bytes) -> MetaPage | None:
    if len(head) < _META_BYTES:
        return None
    magic, version = _MAGIC_VERSION.unpack_from(head, 16)
    if magic != MAGIC or version != VERSION:
        return None
    (page_size,) = _PAGE_SIZE.unpack_from(head, 40)
    last_page, txn_id = _LAST_PAGE_TXN.unpack_from(head, 136)
    return MetaPage(page_size, last_page, txn_id)


def check_data_file(path: Path) -> None:
    """Raises DataDirCorrupt unless ``path`` (if it exists) is as long as its newest
    transaction needs."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return  # a new log
    with open(path, "rb") as f:
        first = _meta_page(f.read(_META_BYTES))
        second = None
        if first is not None:
            f.seek(first.page_size)
            second = _meta_page(f.read(_META_BYTES))
    metas = [m for m in (first, second) if m is not None]
    if not metas:
        what = "empty" if size == 0 else "no valid LMDB meta page: not an LMDB file, or damaged"
        raise DataDirCorrupt(f"{path}: {what}")
    newest = max(metas, key=lambda m: m.txn_id)
    needed = (newest.last_page + 1) * newest.page_size
    if size < needed:
        raise DataDirCorrupt(f"{path}: truncated: {size} bytes, but its newest transaction "
                             f"({newest.txn_id}) needs {needed}")
