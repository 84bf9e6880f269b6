"""Reads a bbolt file (go.etcd.io/bbolt's layout, as etcd writes its db and snapshots).

The newest valid meta page says where the root bucket and the freelist are and how many pages
are in use. A bucket is a B+tree of branch and leaf pages, or, when small, one leaf page inline
in its parent's value. Every page read is checked first: inside the pages in use, the id its
header says, the kind expected, its elements inside it, keys ascending. ``check()`` also
walks every page as bbolt's Tx.Check does (each page in use reached once, or free). A file that
fails any of it raises BoltCorrupt.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

from . import freelist, meta as meta_page
from .page_codec import (
    BRANCH_PAGE,
    BUCKET_LEAF,
    LEAF_PAGE,
    PAGE_HEADER_SIZE,
    page_header,
)
from .page_codec_select import read_branch, read_leaf

_BUCKET_HEADER = struct.Struct("<QQ")  # root pgid, sequence
BUCKET_HEADER_SIZE = _BUCKET_HEADER.size
_DEFAULT_PAGE_SIZE = 4096


class BoltCorrupt(ValueError):
    """The bytes are not an intact bbolt file."""


class BoltFile:
    def __init__(self, data):
        """``data``: the file's bytes (bytes, memoryview or mmap), possibly longer than the
        pages in use (bbolt grows its file ahead; etcd's snapshots carry a hash after them)."""
        self.data = data
        self.meta = _newest_meta(data)
        self.page_size = self.meta.page_size
        if self.meta.pgid * self.page_size > len(data):
            raise BoltCorrupt(f"truncated: the meta counts {self.meta.pgid} pages of "
                              f"{self.page_size} bytes, the file holds {len(data)} bytes")
        self.size = self.meta.pgid * self.page_size  # bbolt's Tx.Size

    # -- buckets ------------------------------------------------------------------------------

    def bucket_names(self) -> list[bytes]:
        return [k for flags, k, _ in self._walk(self.meta.root, None) if flags & BUCKET_LEAF]

    def bucket(self, *path: bytes) -> Bucket | None:
        """The bucket at ``path`` (a name, or names of nested buckets); None if absent."""
        b = Bucket(self, self.meta.root, None)
        for name in path:
            sub = b.sub_bucket(name)
            if sub is None:
                return None
            b = sub
        return b

    def items(self, *path: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The key/value pairs of the bucket at ``path`` in key order (sub-buckets left out);
        nothing if there is no such bucket."""
        b = self.bucket(*path)
        return b.items() if b is not None else iter(())

    # -- pages --------------------------------------------------------------------------------

    def _page(self, pgid: int, seen: dict[int, int] | None) -> tuple[int, int, int]:
        """(offset, end, flags) of page ``pgid`` after checking it; ``seen`` collects the
        pages walked (and refuses one reached twice)."""
        if pgid < 2 or pgid >= self.meta.pgid:
            raise BoltCorrupt(f"page {pgid}: out of bounds (high water mark {self.meta.pgid})")
        offset = pgid * self.page_size
        page_id, flags, _, overflow = page_header(self.data, offset)
        if page_id != pgid:
            raise BoltCorrupt(f"page {pgid}: its header says page {page_id}")
        if pgid + overflow >= self.meta.pgid:
            raise BoltCorrupt(f"page {pgid}: {overflow} overflow pages run past the high water mark")
        if seen is not None:
            for i in range(pgid, pgid + overflow + 1):
                if i in seen:
                    raise BoltCorrupt(f"page {i}: multiple references")
                seen[i] = pgid
        return offset, offset + (overflow + 1) * self.page_size, flags

    def _walk(self, root: int, inline: bytes | None, seen: dict[int, int] | None = None
              ) -> Iterator[tuple[int, bytes, bytes]]:
        """(flags, key, value) of every leaf element of the tree at ``root`` (or of the inline
        leaf page ``inline``), in order, keys checked ascending."""
        last: bytes | None = None
        for flags, key, value in self._elements(root, inline, seen, 0):
            if last is not None and key <= last:
                raise BoltCorrupt(f"keys out of order under page {root}: {key!r} after {last!r}")
            last = key
            yield flags, key, value

    def _elements(self, pgid: int, inline: bytes | None, seen, depth: int):
        if inline is not None:
            try:
                yield from read_leaf(inline, 0, len(inline))
            except ValueError as e:
                raise BoltCorrupt(f"inline bucket: {e}") from None
            return
        if depth > 64:
            raise BoltCorrupt(f"page {pgid}: the tree is deeper than any bbolt writes (a cycle?)")
        offset, end, flags = self._page(pgid, seen)
        try:
            if flags & LEAF_PAGE:
                yield from read_leaf(self.data, offset, end)
            elif flags & BRANCH_PAGE:
                children = read_branch(self.data, offset, end)
                if not children:
                    raise BoltCorrupt(f"page {pgid}: an empty branch page")
                for _, child in children:
                    yield from self._elements(child, None, seen, depth + 1)
            else:
                raise BoltCorrupt(f"page {pgid}: invalid page type {flags:#x} in a bucket")
        except ValueError as e:
            if isinstance(e, BoltCorrupt):
                raise
            raise BoltCorrupt(f"page {pgid}: {e}") from None

    # -- whole-file check -----------------------------------------------------------------------

    def free_pages(self, seen: dict[int, int] | None = None) -> list[int]:
        if self.meta.freelist == meta_page.NO_FREELIST:
            return []
        offset, end, _ = self._page(self.meta.freelist, seen)
        try:
            return freelist.decode_page(self.data, offset, end)
        except ValueError as e:
            raise BoltCorrupt(f"freelist: {e}") from None

    def check(self) -> None:
        """Every page in use is reached exactly once from the root or is free, and every
        bucket reads (bbolt's Tx.Check); BoltCorrupt on the first problem found. etcd 3.4
        keeps no freelist in the file (bbolt's NoFreelistSync): then every page not reached
        is free."""
        seen: dict[int, int] = {0: 0, 1: 1}
        free = self.free_pages(seen)
        for pgid in free:
            if pgid in seen:
                raise BoltCorrupt(f"page {pgid}: free and in use")
            seen[pgid] = pgid
        self._check_bucket(self.meta.root, None, seen)
        if self.meta.freelist == meta_page.NO_FREELIST:
            return  # no freelist kept (bbolt's NoFreelistSync): the pages not reached are free
        for pgid in range(self.meta.pgid):
            if pgid not in seen:
                raise BoltCorrupt(f"page {pgid}: unreachable unfreed")

    def _check_bucket(self, root: int, inline: bytes | None, seen: dict[int, int]) -> None:
        for flags, _, value in self._walk(root, inline, seen):
            if flags & BUCKET_LEAF:
                sub_root, sub_inline = _bucket_value(value)
                self._check_bucket(sub_root, sub_inline, seen)


class Bucket:
    """One bucket of a BoltFile: its pairs and its sub-buckets."""

    def __init__(self, db: BoltFile, root: int, inline: bytes | None):
        self._db = db
        self._root = root
        self._inline = inline

    def elements(self) -> Iterator[tuple[int, bytes, bytes]]:
        return self._db._walk(self._root, self._inline)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for flags, key, value in self.elements():
            if not flags & BUCKET_LEAF:
                yield key, value

    def sub_bucket(self, name: bytes) -> Bucket | None:
        for flags, key, value in self.elements():
            if key == name:
                if not flags & BUCKET_LEAF:
                    return None
                root, inline = _bucket_value(value)
                return Bucket(self._db, root, inline)
            if key > name:
                break
        return None


def _bucket_value(value: bytes) -> tuple[int, bytes | None]:
    """(root page, inline leaf page or None) of a bucket's value in its parent."""
    if len(value) < BUCKET_HEADER_SIZE:
        raise BoltCorrupt(f"a bucket's value is {len(value)} bytes, shorter than its header")
    root, _ = _BUCKET_HEADER.unpack_from(value)
    if root == 0:
        page = value[BUCKET_HEADER_SIZE:]
        if len(page) < PAGE_HEADER_SIZE:
            raise BoltCorrupt("an inline bucket without its page")
        return 0, page
    return root, None


def _newest_meta(data) -> meta_page.Meta:
    """The valid meta page with the higher txid (bbolt's db.meta()); BoltCorrupt if neither is
    valid. The page size comes from meta 0, or the default when meta 0 is unreadable."""
    if len(data) < 2 * PAGE_HEADER_SIZE + meta_page.SIZE:
        raise BoltCorrupt(f"truncated: {len(data)} bytes, too short for a bbolt file")
    metas = []
    errors = []
    page_size = _DEFAULT_PAGE_SIZE
    try:
        m0 = meta_page.decode(data, 0)
        metas.append(m0)
        page_size = m0.page_size
    except meta_page.MetaInvalid as e:
        errors.append(f"meta 0: {e}")
    try:
        metas.append(meta_page.decode(data, page_size))
    except meta_page.MetaInvalid as e:
        errors.append(f"meta 1: {e}")
    if not metas:
        raise BoltCorrupt("not a bbolt file, or both meta pages damaged (" + "; ".join(errors) + ")")
    newest = max(metas, key=lambda m: m.txid)
    if newest.page_size < 1024 or newest.page_size & (newest.page_size - 1):
        raise BoltCorrupt(f"page size {newest.page_size} is not a power of two")
    return newest
