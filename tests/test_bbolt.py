"""The bbolt reader and writer (kvstore/bbolt): round trips through branch, leaf, overflow and
inline pages; the compiled page codec against its pure twin; damaged files refused."""
import io
import os
import random
import struct

import pytest

# The compiled module must be built; a missing build fails here rather than skipping.
import kvstore._ext.bbolt_pages as compiled
from kvstore.bbolt import BoltCorrupt, BoltFile, BoltWriter, freelist, meta, page_codec as pure
from kvstore.bbolt.page_codec import BRANCH_PAGE, BUCKET_LEAF, LEAF_PAGE

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess

PAGE = 4096


def write(buckets, sync_freelist=False, slice_size=1000):
    """A bbolt file's bytes holding ``buckets`` ({name: [(key, value)...]}), each bucket's
    pairs added ``slice_size`` at a time."""
    out = io.BytesIO()
    w = BoltWriter(out, sync_freelist=sync_freelist)
    for name in sorted(buckets):
        b = w.bucket(name)
        items = buckets[name]
        for s in range(0, len(items), slice_size):
            part = items[s:s + slice_size]
            b.add([k for k, _ in part], [v for _, v in part])
        b.finish()
    size = w.finish()
    data = out.getvalue()
    assert len(data) == size and size % PAGE == 0
    return data


def pages_of(db, kinds):
    """Page ids whose header flags are among ``kinds``, from the file's start to its end."""
    out = []
    pgid = 2
    while pgid < db.meta.pgid:
        _, flags, _, overflow = pure.page_header(db.data, pgid * PAGE)
        if flags in kinds:
            out.append((pgid, flags, overflow))
        pgid += overflow + 1
    return out


def random_items(rng, n, big_every=0):
    keys = sorted({rng.randbytes(rng.randint(1, 24)) for _ in range(n)})
    return [(k, rng.randbytes(20_000 if big_every and i % big_every == 0 else rng.randint(0, 400)))
            for i, k in enumerate(keys)]


@pytest.mark.parametrize("sync_freelist", [False, True])
def test_round_trip_branches_overflow_and_inline(sync_freelist):
    rng = random.Random(7)
    many = random_items(rng, 30_000, big_every=997)
    buckets = {b"big": many, b"small": [(b"a", b"1"), (b"b", b"2")], b"empty": [],
               b"bytes\x00\xff": [(bytes([i]), bytes([i]) * i) for i in range(40)]}
    db = BoltFile(write(buckets, sync_freelist))
    db.check()
    assert db.bucket_names() == sorted(buckets)
    for name, items in buckets.items():
        assert list(db.items(name)) == items
    assert db.bucket(b"missing") is None and list(db.items(b"missing")) == []
    # What was written: a tree three levels deep (a root branch over branches over leaves),
    # overflow pages for the 20 kB values, and the small buckets inline (root page 0).
    kinds = pages_of(db, (LEAF_PAGE, BRANCH_PAGE))
    assert any(overflow for _, flags, overflow in kinds if flags == LEAF_PAGE)
    assert sum(1 for _, flags, _ in kinds if flags == BRANCH_PAGE) > 2
    assert db.bucket(b"big")._root != 0
    assert db.bucket(b"small")._root == 0 and db.bucket(b"empty")._root == 0
    assert (db.meta.freelist == 2) == sync_freelist and db.free_pages() == []


def test_slicing_does_not_change_the_file():
    items = random_items(random.Random(3), 5_000, big_every=101)
    whole = write({b"k": items}, slice_size=len(items))
    assert write({b"k": items}, slice_size=1) == whole
    assert write({b"k": items}, slice_size=333) == whole


def test_bucket_that_fits_a_quarter_page_is_inline():
    # bbolt inlines a bucket of no sub-buckets whose leaf is at most a quarter of a page.
    fits = [(b"k", b"v" * (PAGE // 4 - 16 - 16 - 1))]
    too_big = [(b"k", b"v" * (PAGE // 4 - 16 - 16))]
    db = BoltFile(write({b"a": fits, b"b": too_big}))
    db.check()
    assert db.bucket(b"a")._root == 0 and db.bucket(b"b")._root != 0
    assert list(db.items(b"a")) == fits and list(db.items(b"b")) == too_big


def test_meta_pages_as_bbolt_writes_them():
    db = BoltFile(write({b"a": [(b"k", b"v")]}))
    m0, m1 = meta.decode(db.data, 0), meta.decode(db.data, PAGE)
    assert (m0.page_size, m0.txid, m1.txid) == (PAGE, 2, 1)
    assert m0._replace(txid=1) == m1 and db.meta == m0
    assert db.meta.freelist == meta.NO_FREELIST  # as etcd 3.4 (NoFreelistSync)
    # FNV-64a's published test vectors
    assert meta.fnv64a(b"") == 0xCBF29CE484222325 and meta.fnv64a(b"a") == 0xAF63DC4C8601EC8C


def test_writer_refuses_unordered_input():
    w = BoltWriter(io.BytesIO())
    b = w.bucket(b"b")
    b.add([b"1", b"2"], [b"", b""])
    with pytest.raises(ValueError):
        b.add([b"2"], [b""])
    b.finish()
    with pytest.raises(ValueError):
        w.bucket(b"a")


def test_freelist_page_round_trip():
    for ids in ([], [5, 3, 9], list(range(10, 70_010))):  # past 0xFFFF ids: count in the body
        page = freelist.encode_page(ids, 2, PAGE)
        assert len(page) % PAGE == 0
        assert freelist.decode_page(page, 0, len(page)) == sorted(ids)


# -- compiled page codec against its pure twin ------------------------------------------------

def test_compiled_page_codec_is_selected_unless_disabled():
    from kvstore.bbolt import page_codec_select

    assert page_codec_select.COMPILED == (os.environ.get("KVSTORE_NO_EXT", "") in ("", "0"))


@pytest.mark.parametrize("seed", range(40))
def test_page_codec_twins_agree(seed):
    rng = random.Random(seed)
    items = random_items(rng, rng.randint(0, 400), big_every=rng.choice([0, 7, 50]))
    keys, values = [k for k, _ in items], [v for _, v in items]
    page_size = rng.choice([512, 1024, 4096])
    for final in (True, False):
        for flags in (0, BUCKET_LEAF):
            got = compiled.pack_leaf_pages(keys, values, flags, seed + 2, page_size, final)
            assert got == pure.pack_leaf_pages(keys, values, flags, seed + 2, page_size, final)
    pgids = [rng.randrange(1 << 40) for _ in keys]
    branches = compiled.pack_branch_pages(keys, pgids, 3, page_size)
    assert branches == pure.pack_branch_pages(keys, pgids, 3, page_size)
    leaves, pages, _, packed = pure.pack_leaf_pages(keys, values, 0, 0, page_size, True)
    assert packed == len(keys)
    offsets = []
    for i, pgid in enumerate(pages):
        end = (pages[i + 1] if i + 1 < len(pages) else len(leaves) // page_size) * page_size
        offsets.append((pgid * page_size, end))
    decoded = []
    for start, end in offsets:
        a = compiled.read_leaf(leaves, start, end)
        assert a == pure.read_leaf(leaves, start, end)
        decoded += [(k, v) for _, k, v in a]
    assert decoded == items
    data, _, _ = branches
    if data:
        assert compiled.read_branch(data, 0, page_size) == pure.read_branch(data, 0, page_size)


def outcome(read, buf, offset, end):
    try:
        return read(buf, offset, end)
    except ValueError as e:
        return ("ValueError", str(e))


@pytest.mark.parametrize("seed", range(30))
def test_page_codec_twins_agree_on_damaged_pages(seed):
    rng = random.Random(seed)
    items = random_items(rng, 30)
    leaf, _, _, _ = pure.pack_leaf_pages([k for k, _ in items], [v for _, v in items], 0, 0,
                                         PAGE, True)
    branch, _, _ = pure.pack_branch_pages([k for k, _ in items], list(range(len(items))), 0, PAGE)
    for page, read_c, read_p in ((leaf, compiled.read_leaf, pure.read_leaf),
                                 (branch, compiled.read_branch, pure.read_branch)):
        damaged = bytearray(page[:PAGE])
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(8, 16 + 16 * 30)] = rng.randrange(256)
        end = rng.choice([PAGE, PAGE // 2, 40])
        assert outcome(read_c, bytes(damaged), 0, end) == outcome(read_p, bytes(damaged), 0, end)


# -- damaged files ------------------------------------------------------------------------------

def sample_file():
    rng = random.Random(11)
    return write({b"key": random_items(rng, 3_000, big_every=500), b"meta": [(b"a", b"b")]})


def flipped(data, offset, xor=0x01):
    d = bytearray(data)
    d[offset] ^= xor
    return bytes(d)


def refused(data):
    with pytest.raises(BoltCorrupt) as e:
        db = BoltFile(data)
        db.check()
        for name in db.bucket_names():
            list(db.items(name))
    return str(e.value)


def test_damaged_files_refused():
    data = sample_file()
    BoltFile(data).check()
    assert "truncated" in refused(data[:len(data) - PAGE])
    assert "truncated" in refused(data[:100])
    assert "meta" in refused(b"\x00" * (4 * PAGE))  # not a bbolt file
    # Both meta pages damaged: refused; one: the other one is read, as bbolt does.
    assert "checksum" in refused(flipped(flipped(data, 16 + 40), PAGE + 16 + 40))
    only_meta1 = BoltFile(flipped(data, 16 + 40))
    assert only_meta1.meta.txid == 1 and list(only_meta1.items(b"meta")) == [(b"a", b"b")]
    db = BoltFile(data)
    root = db.bucket(b"key")._root
    # A page whose header names another page; an element pointing out of its page; keys out
    # of order; a branch pointing past the pages in use.
    assert "header says" in refused(flipped(data, root * PAGE))
    leaf = next(p for p, flags, _ in pages_of(db, (LEAF_PAGE,))
                if pure.page_header(data, p * PAGE)[2] > 2)
    assert "outside" in refused(flipped(data, leaf * PAGE + 16 + 4 + 3, 0x7F))
    elem = leaf * PAGE + 16
    pos, ksize = struct.unpack_from("<II", data, elem + 4)
    d = bytearray(data)
    d[elem + pos:elem + pos + ksize] = b"\xff" * ksize  # the leaf's first key now its greatest
    assert "out of order" in refused(bytes(d))
    d = bytearray(data)
    struct.pack_into("<Q", d, root * PAGE + 16 + 8, db.meta.pgid + 5)
    assert "out of bounds" in refused(bytes(d))


def test_check_finds_pages_reached_twice_or_never():
    data = sample_file()
    db = BoltFile(data)
    root = db.bucket(b"key")._root
    _, _, count, _ = pure.page_header(data, root * PAGE)
    d = bytearray(data)
    first_child = struct.unpack_from("<Q", d, root * PAGE + 16 + 8)[0]
    struct.pack_into("<Q", d, root * PAGE + 16 + 16 + 8, first_child)  # the 2nd points at the 1st's
    assert "multiple references" in refused(bytes(d))
    # With a freelist kept (bbolt's default), a page neither reached nor free is refused.
    synced = write({b"key": [(b"k%05d" % i, b"v" * 300) for i in range(200)]}, sync_freelist=True)
    BoltFile(synced).check()
    db = BoltFile(synced)
    parent = db.bucket(b"key")._root
    d = bytearray(synced)
    struct.pack_into("<H", d, parent * PAGE + 10, struct.unpack_from("<H", d, parent * PAGE + 10)[0] - 1)
    assert "unreachable unfreed" in refused(bytes(d))
