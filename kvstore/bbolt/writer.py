"""Writes a bbolt file (go.etcd.io/bbolt's layout) from buckets given in key order.

bbolt builds its B+tree by inserting and splitting; a file written whole can be laid out bottom
up instead. Each bucket's pairs go into leaf pages as they come (a slice at a time, so a large
bucket is never held whole), then branch pages over them, level by level, up to its root. A
bucket small enough (what bbolt's Bucket.inlineable allows: no sub-buckets, a quarter of a page
at most) is written inline in its parent's value, as bbolt writes it. The root bucket, which
names the others, comes last; then the two meta pages (and, if asked, an empty freelist: every
page is used) are written in front, into the pages kept for them.

Pages go to ``out`` in page-id order, so a plain file (or BytesIO) works; only the first two (or
three) pages are written again at the end (``out`` must be seekable).
"""
from __future__ import annotations

import struct

from . import freelist, meta as meta_page
from .page_codec import BUCKET_LEAF, ELEMENT_SIZE, LEAF_PAGE, PAGE_HEADER_SIZE
from .page_codec_select import pack_branch_pages, pack_leaf_pages

_BUCKET_HEADER = struct.Struct("<QQ")
_PAGE_HEADER = struct.Struct("<QHHI")
DEFAULT_PAGE_SIZE = 4096
_SLICE_BYTES = 1 << 20  # pairs are packed once this much is pending


class BoltWriter:
    def __init__(self, out, page_size: int = DEFAULT_PAGE_SIZE, txid: int = 2,
                 sync_freelist: bool = False):
        """``sync_freelist``: write a freelist page (page 2), as bbolt does by default; etcd 3.4
        opens its db with NoFreelistSync and writes none (the meta says so), nor does this by
        default."""
        self.out = out
        self.page_size = page_size
        self.txid = txid
        self.sync_freelist = sync_freelist
        self._first_data_page = 3 if sync_freelist else 2  # 0 and 1: meta pages
        self.next_pgid = self._first_data_page
        self._root_names: list[bytes] = []
        self._root_values: list[bytes] = []
        self._open: BucketWriter | None = None
        out.write(bytes(self._first_data_page * page_size))

    def bucket(self, name: bytes) -> BucketWriter:
        """A top-level bucket, to be filled in key order and finished before the next one;
        buckets must be named in ascending order."""
        if self._open is not None:
            raise RuntimeError(f"bucket {self._open.name!r} is not finished")
        if self._root_names and name <= self._root_names[-1]:
            raise ValueError(f"bucket {name!r} after {self._root_names[-1]!r}: names must ascend")
        self._open = BucketWriter(self, name)
        return self._open

    def put_bucket(self, name: bytes, items) -> None:
        """A whole top-level bucket from (key, value) pairs in key order."""
        b = self.bucket(name)
        keys = []
        values = []
        for k, v in items:
            keys.append(k)
            values.append(v)
        b.add(keys, values)
        b.finish()

    def _bucket_done(self, b: BucketWriter, value: bytes) -> None:
        self._root_names.append(b.name)
        self._root_values.append(value)
        self._open = None

    def _write_pages(self, data: bytes) -> None:
        self.out.write(data)
        self.next_pgid += len(data) // self.page_size

    def finish(self) -> int:
        """Writes the root bucket, the freelist and the meta pages; returns the file's size."""
        if self._open is not None:
            raise RuntimeError(f"bucket {self._open.name!r} is not finished")
        root_bucket = BucketWriter(self, b"", BUCKET_LEAF)
        root_bucket.add(self._root_names, self._root_values)
        root = root_bucket.write_tree()
        hwm = self.next_pgid
        free = 2 if self.sync_freelist else meta_page.NO_FREELIST
        meta = meta_page.Meta(self.page_size, root, free, hwm, self.txid)
        self.out.seek(0)
        self.out.write(meta_page.encode_page(meta, 0))
        self.out.write(meta_page.encode_page(meta._replace(txid=self.txid - 1), 1))
        if self.sync_freelist:
            self.out.write(freelist.encode_page([], 2, self.page_size))
        self.out.seek(hwm * self.page_size)
        return hwm * self.page_size


class BucketWriter:
    """One bucket being written: pairs are added in key order, slice by slice."""

    def __init__(self, db: BoltWriter, name: bytes, element_flags: int = 0):
        self.db = db
        self.name = name
        self._flags = element_flags  # BUCKET_LEAF: the root bucket, whose pairs are buckets
        self._keys: list[bytes] = []
        self._values: list[bytes] = []
        self._pending = 0  # bytes of the pairs not packed yet
        self._last: bytes | None = None
        # The leaves written so far: their page ids and first keys (what branches point at).
        self._leaf_pgids: list[int] = []
        self._leaf_keys: list[bytes] = []

    def add(self, keys: list[bytes], values: list[bytes]) -> None:
        """More pairs, their keys ascending and after every key added before."""
        if not keys:
            return
        if self._last is not None and keys[0] <= self._last:
            raise ValueError(f"bucket {self.name!r}: key {keys[0]!r} after {self._last!r}")
        self._last = keys[-1]
        self._keys += keys
        self._values += values
        self._pending += sum(map(len, keys)) + sum(map(len, values)) + ELEMENT_SIZE * len(keys)
        if self._pending >= _SLICE_BYTES:
            self._pack(final=False)

    def _pack(self, final: bool) -> None:
        db = self.db
        data, pgids, firsts, packed = pack_leaf_pages(self._keys, self._values, self._flags,
                                                      db.next_pgid, db.page_size, final)
        db._write_pages(data)
        self._leaf_pgids += pgids
        self._leaf_keys += firsts
        del self._keys[:packed], self._values[:packed]
        self._pending = (sum(map(len, self._keys)) + sum(map(len, self._values))
                         + ELEMENT_SIZE * len(self._keys))

    def _inline_value(self) -> bytes | None:
        """The bucket's value with its only leaf inline, if bbolt would inline it."""
        if self._leaf_pgids:
            return None
        size = PAGE_HEADER_SIZE + self._pending
        if size > self.db.page_size // 4:
            return None
        page, _, _, _ = pack_leaf_pages(self._keys, self._values, 0, 0, size, True)
        return _BUCKET_HEADER.pack(0, 0) + (page or _PAGE_HEADER.pack(0, LEAF_PAGE, 0, 0))

    def finish(self) -> None:
        """Writes what is left, the branch pages, and gives the parent the bucket's value."""
        value = self._inline_value()
        if value is None:
            value = _BUCKET_HEADER.pack(self.write_tree(), 0)
        self.db._bucket_done(self, value)

    def write_tree(self) -> int:
        """Writes what is left and the branch pages over the leaves; returns the root page."""
        db = self.db
        self._pack(final=True)
        pgids, keys = self._leaf_pgids, self._leaf_keys
        if not pgids:  # no pairs: one empty leaf (an empty root bucket, as a new file has)
            pgids = [db.next_pgid]
            db._write_pages(_PAGE_HEADER.pack(db.next_pgid, LEAF_PAGE, 0, 0)
                            + bytes(db.page_size - PAGE_HEADER_SIZE))
        while len(pgids) > 1:
            data, pgids, keys = pack_branch_pages(keys, pgids, db.next_pgid, db.page_size)
            db._write_pages(data)
        return pgids[0]
