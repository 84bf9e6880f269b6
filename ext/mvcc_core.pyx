# cython: language_level=3
"""Compiled twin of kvstore/mvcc/kv.py and kvstore/mvcc/key_index.py.

Same classes, same methods, same results (tests/test_ext_twins.py checks it on random
histories). Typed fields turn the per-key work of every range scan (finding the revision
visible at a read revision) into C comparisons instead of attribute lookups.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcmp, memcpy, memmove, memset
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM

import sys

if sys.byteorder != "little":  # the snapshot codec writes host-order integers
    raise ImportError("kvstore._ext.mvcc_core assumes a little-endian host")


# Holds bytes only, so it can never be part of a reference cycle: not tracked by the GC.
@cython.no_gc
cdef class KeyValue:
    cdef readonly bytes key
    # The serialized mvccpb.KeyValue (kv_wire.pxi); the value lives only in there.
    cdef readonly bytes encoded
    cdef readonly long long create_revision
    cdef readonly long long mod_revision
    cdef readonly long long version
    cdef readonly long long lease
    # Where the value field (tag to end of data) lies in ``encoded`` is computed from the
    # other fields (_value_start, _value_end) rather than stored: 64 bytes an object, not 80.

    def __init__(self, bytes key, long long create_revision, long long mod_revision,
                 long long version, bytes value, long long lease):
        self.key = key
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.lease = lease
        _encode_kv(self, PyBytes_AS_STRING(value), len(value))

    @classmethod
    def tombstone(cls, bytes key, long long revision):
        return _new_kv(key, 0, revision, 0, NULL, 0, 0)

    @property
    def value(self):
        if _value_start(self) == _value_end(self):
            return b""
        cdef Py_ssize_t n = _value_len(self)
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self.encoded) + _value_end(self) - n, n)

    @property
    def value_start(self):
        return _value_start(self)

    @property
    def value_end(self):
        return _value_end(self)

    @property
    def is_tombstone(self):
        return self.version == 0

    def as_tuple(self):
        return (self.key, self.create_revision, self.mod_revision, self.version, self.value,
                self.lease)

    def __eq__(self, other):
        return isinstance(other, KeyValue) and self.as_tuple() == other.as_tuple()

    def __hash__(self):
        return hash(self.as_tuple())

    def __reduce__(self):
        return (KeyValue, self.as_tuple())

    def __repr__(self):
        return ("KeyValue(key=%r, create=%d, mod=%d, version=%d, value=%r, lease=%d)"
                % (self.key, self.create_revision, self.mod_revision, self.version,
                   self.value[:32], self.lease))


include "kv_wire.pxi"
include "watch_fanout.pxi"


cdef inline Py_ssize_t _last_at_or_before(PyObject** revs, Py_ssize_t n, long long rev) noexcept:
    """Index of the last KeyValue in revs[:n] (ascending mod_revision) with mod_revision <= rev,
    or -1."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if (<KeyValue>revs[mid]).mod_revision <= rev:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


# Holds KeyValues only (which hold bytes only): never part of a reference cycle, so not tracked
# by the GC, and a store of many keys costs full collections nothing.
@cython.no_gc
cdef class KeyIndex:
    """Twin of kvstore/mvcc/key_index.py (whose docstring explains the flat layout): one C
    array of KeyValue references. A key with one revision (most keys, between compactions)
    keeps it in ``_one``: 48 bytes in all, where a list of generation lists cost ~240."""
    cdef readonly bytes key
    cdef PyObject** _revs  # owned references, ascending mod_revision; &_one while _cap is 1
    cdef int _n  # 32-bit counts: the object is 48 bytes, not 64
    cdef int _cap
    cdef PyObject* _one

    def __init__(self, bytes key, revisions=None):
        self.key = key
        if revisions:
            for kv in revisions:
                _ki_append(self, kv)

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self._n):
            Py_DECREF(<object>self._revs[i])
        if self._revs != &self._one:
            PyMem_Free(self._revs)

    @property
    def revisions(self):
        return _ki_slice(self, 0, self._n)

    @property
    def generations(self):
        cdef list gens = [[]]
        cdef Py_ssize_t i
        for i in range(self._n):
            (<list>gens[-1]).append(<object>self._revs[i])
            if (<KeyValue>self._revs[i]).version == 0:
                gens.append([])
        return gens

    def put(self, KeyValue kv):
        _ki_append(self, kv)

    def tombstone(self, KeyValue tomb):
        _ki_append(self, tomb)

    def pop(self):
        if self._n == 0:
            raise IndexError("pop from an empty KeyIndex")
        self._n -= 1
        kv = <object>self._revs[self._n]
        Py_DECREF(kv)  # the reference the array held; ``kv`` holds its own
        return kv

    def current(self):
        if self._n and (<KeyValue>self._revs[self._n - 1]).version:
            return <object>self._revs[self._n - 1]
        return None

    def get(self, long long at_rev):
        return _ki_get(self, at_rev)

    def at(self, long long rev):
        cdef Py_ssize_t i = _last_at_or_before(self._revs, self._n, rev)
        if i >= 0 and (<KeyValue>self._revs[i]).mod_revision == rev:
            return <object>self._revs[i]
        return None

    def since(self, long long rev):
        return _ki_slice(self, _last_at_or_before(self._revs, self._n, rev - 1) + 1, self._n)

    def revisions_at(self, long long at_rev):
        return _ki_slice(self, 0, _last_at_or_before(self._revs, self._n, at_rev) + 1)

    def compact(self, long long at_rev):
        cdef Py_ssize_t i = _last_at_or_before(self._revs, self._n, at_rev), cut, j
        if i >= 0:
            cut = i + 1 if (<KeyValue>self._revs[i]).version == 0 else i
            for j in range(cut):
                Py_DECREF(<object>self._revs[j])
            memmove(self._revs, self._revs + cut, (self._n - cut) * sizeof(PyObject*))
            self._n -= cut
        return self._n == 0

    def is_empty(self):
        return self._n == 0

    def revision_count(self):
        return self._n


# Module functions rather than cdef methods: a method table would add a pointer to every
# KeyIndex (56 bytes, where it is 48).

cdef int _ki_append(KeyIndex self, KeyValue kv) except -1:
    cdef PyObject** grown
    if self._cap == 0:
        self._revs = &self._one
        self._cap = 1
    elif self._n == self._cap:
        if self._revs == &self._one:
            grown = <PyObject**>PyMem_Malloc(4 * sizeof(PyObject*))
            if grown != NULL:
                grown[0] = self._one
        else:
            grown = <PyObject**>PyMem_Realloc(self._revs, self._cap * 2 * sizeof(PyObject*))
        if grown == NULL:
            raise MemoryError()
        self._cap = 4 if self._revs == &self._one else self._cap * 2
        self._revs = grown
    Py_INCREF(kv)
    self._revs[self._n] = <PyObject*>kv
    self._n += 1
    return 0

cdef list _ki_slice(KeyIndex self, Py_ssize_t start, Py_ssize_t stop):
    cdef list out = []
    cdef Py_ssize_t i
    for i in range(start, stop):
        out.append(<object>self._revs[i])
    return out

cdef inline object _ki_get(KeyIndex ki, long long at_rev):
    """The revision visible at at_rev, or None (KeyIndex.get)."""
    cdef Py_ssize_t i = _last_at_or_before(ki._revs, ki._n, at_rev)
    if i < 0 or (<KeyValue>ki._revs[i]).version == 0:
        return None
    return <object>ki._revs[i]


include "history.pxi"
include "ordered_keys.pxi"


def collect_visible(key_indexes, long long at_rev, Py_ssize_t limit, bint count_only,
                    bint full_count=True):
    """(kvs, count) of the KeyValues visible at at_rev: the loop of every range read."""
    cdef list kvs = []
    cdef Py_ssize_t count = 0
    cdef KeyIndex ki
    for ki in key_indexes:
        kv = _ki_get(ki, at_rev)
        if kv is None:
            continue
        if not count_only and (limit <= 0 or count < limit):
            kvs.append(kv)
        elif not full_count:
            break
        count += 1
    return kvs, count


def deleted(list key_indexes):
    """The key indexes whose newest revision is a tombstone (or that hold none), in order:
    twin of key_index.deleted (a restart's index of deleted keys, one C loop over 1M)."""
    cdef list out = []
    cdef KeyIndex ki
    for ki in key_indexes:
        if ki._n == 0 or (<KeyValue>ki._revs[ki._n - 1]).version == 0:
            out.append(ki)
    return out


def kept_revisions(key_indexes, long long compact_rev, long long upto, bint as_hashed,
                   dict subs):
    """What compaction at compact_rev kept of these keys (each one's newest put by then), as
    (main, sub, KeyValue), and those still the key's newest at upto; and whether any key is
    live at upto (only looked at with as_hashed): twin of key_index.kept_revisions."""
    cdef list kept = [], at_upto = []
    cdef bint live = False
    cdef KeyIndex ki
    cdef long long rev
    for ki in key_indexes:
        kv = _ki_get(ki, compact_rev)
        newest = _ki_get(ki, upto) if as_hashed else None
        if newest is not None:
            live = True
        if kv is None:
            continue
        rev = (<KeyValue>kv).mod_revision
        if rev > upto:
            continue
        item = (rev, subs.get((rev, ki.key), 0) if subs else 0, kv)
        kept.append(item)
        if newest is kv:
            at_upto.append(item)
    return kept, at_upto, live


cdef inline void _put_be64(unsigned char* out, unsigned long long n) noexcept:
    cdef int i
    for i in range(8):
        out[7 - i] = n & 0xFF
        n >>= 8


def encode_records(list items, Py_ssize_t start=0, Py_ssize_t max_bytes=1 << 20):
    """etcd's key bucket records of the (main, sub, KeyValue) items from ``start``, one after
    the other, until ``max_bytes`` (at least one record): each revision key, then the marshaled
    KeyValue (a tombstone's: its key only); and where they stopped. Twin of
    key_index.encode_records."""
    cdef bytearray out = bytearray()
    cdef unsigned char head[18]
    cdef KeyValue kv
    cdef bytes key
    cdef Py_ssize_t n, i = start, end = len(items)
    while i < end and (i == start or len(out) < max_bytes):
        item = items[i]
        i += 1
        kv = <KeyValue>item[2]
        _put_be64(head, <unsigned long long>(<long long>item[0]))
        head[8] = 95  # "_"
        _put_be64(head + 9, <unsigned long long>(<long long>item[1]))
        if kv.version:
            out += PyBytes_FromStringAndSize(<char*>head, 17)
            out += kv.encoded
        else:
            head[17] = 116  # "t"
            out += PyBytes_FromStringAndSize(<char*>head, 18)
            key = kv.key
            n = len(key)
            out += b"\x0a"
            while n >= 0x80:
                out.append((n & 0x7F) | 0x80)
                n >>= 7
            out.append(n)
            out += key
    return bytes(out), i


# -- snapshot codec (twin: kvstore/mvcc/state_codec.py, whose docstring gives the format) ------

cdef inline Py_ssize_t _value_len(KeyValue kv) noexcept:
    cdef Py_ssize_t start = _value_start(kv)
    if start == _value_end(kv):
        return 0
    return <Py_ssize_t>_get_varint(<const unsigned char*>PyBytes_AS_STRING(kv.encoded) + start + 1)


cdef inline char* _put_u32(char* p, Py_ssize_t v):
    cdef uint32_t x = <uint32_t>v
    memcpy(p, &x, 4)
    return p + 4


cdef inline char* _put_i64(char* p, int64_t v):
    memcpy(p, &v, 8)
    return p + 8


cdef inline char* _put_bytes(char* p, bytes b):
    cdef Py_ssize_t n = len(b)
    p = _put_u32(p, n)
    memcpy(p, PyBytes_AS_STRING(b), n)
    return p + n


cdef inline uint32_t _get_u32(const char* p):
    cdef uint32_t x
    memcpy(&x, p, 4)
    return x


cdef inline int64_t _get_i64(const char* p):
    cdef int64_t x
    memcpy(&x, p, 8)
    return x


cdef inline void _need(Py_ssize_t pos, Py_ssize_t n, Py_ssize_t end) except *:
    if n < 0 or end - pos < n:
        raise ValueError("corrupt snapshot: truncated record")


def encode_keys(key_indexes, long long at_rev=0):
    cdef list kis = list(key_indexes)
    cdef Py_ssize_t size = 0, i, j, n, nrevs
    cdef KeyIndex ki
    cdef KeyValue kv
    cdef list counts = []
    for ki in kis:
        nrevs = (_last_at_or_before(ki._revs, ki._n, at_rev) + 1) if at_rev else ki._n
        counts.append(nrevs)
        size += 8 + len(ki.key)
        for j in range(nrevs):
            size += 36 + _value_len(<KeyValue>ki._revs[j])
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    for i in range(len(kis)):
        ki = kis[i]
        nrevs = counts[i]
        p = _put_bytes(p, ki.key)
        p = _put_u32(p, nrevs)
        for j in range(nrevs):
            kv = <KeyValue>ki._revs[j]
            p = _put_i64(p, kv.create_revision)
            p = _put_i64(p, kv.mod_revision)
            p = _put_i64(p, kv.version)
            p = _put_i64(p, kv.lease)
            n = _value_len(kv)
            p = _put_u32(p, n)
            memcpy(p, PyBytes_AS_STRING(kv.encoded) + _value_end(kv) - n, n)
            p += n
    return out


cdef list _decode_keys(const char* base, Py_ssize_t end, _RevTable* table):
    """The KeyIndexes of a keys section; with ``table``, each KeyValue whose revision is in
    the table's range is entered in it."""
    cdef Py_ssize_t pos = 0, n, nrevs, j
    cdef list out = []
    cdef KeyIndex ki
    cdef KeyValue kv
    cdef bytes key
    cdef int64_t mod
    while pos < end:
        _need(pos, 4, end)
        n = _get_u32(base + pos)
        pos += 4
        _need(pos, n + 4, end)
        key = PyBytes_FromStringAndSize(base + pos, n)
        pos += n
        nrevs = _get_u32(base + pos)
        pos += 4
        ki = KeyIndex.__new__(KeyIndex)
        ki.key = key
        for j in range(nrevs):
            _need(pos, 36, end)
            n = _get_u32(base + pos + 32)
            _need(pos + 36, n, end)
            mod = _get_i64(base + pos + 8)
            kv = _new_kv(key, _get_i64(base + pos), mod, _get_i64(base + pos + 16),
                         base + pos + 36, n, _get_i64(base + pos + 24))
            _ki_append(ki, kv)
            if table != NULL and table.first <= mod < table.first + table.span:
                _table_add(table, mod, kv)
            pos += 36 + n
        out.append(ki)
    return out


cdef class _View:
    """A read-only buffer held for as long as this object lives (bytes, memoryview, mmap)."""
    cdef Py_buffer buf
    cdef bint held

    def __cinit__(self, data):
        PyObject_GetBuffer(data, &self.buf, PyBUF_SIMPLE)
        self.held = True

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.buf)


def decode_keys(data):
    """The KeyIndexes, in the order encoded (``data``: bytes or any buffer)."""
    cdef _View v = _View(data)
    return _decode_keys(<const char*>v.buf.buf, v.buf.len, NULL)


def encode_history(History history, Py_ssize_t start=0, stop=None):
    """The history's records from position ``start`` (0: its oldest revision) to ``stop``
    (exclusive; None: its end): slices encoded in turn concatenate to the whole."""
    cdef Py_ssize_t size = 0, i
    cdef Py_ssize_t end = history._n if stop is None else min(<Py_ssize_t>stop, history._n)
    cdef tuple changes
    cdef KeyValue kv
    start = max(start, 0)
    for i in range(start, end):
        changes = history._changes_at(i)
        size += 12
        for kv in changes:
            size += 4 + len(kv.key)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    for i in range(start, end):
        changes = history._changes_at(i)
        p = _put_i64(p, history._revs[history._start + i])
        p = _put_u32(p, len(changes))
        for kv in changes:
            p = _put_bytes(p, kv.key)
    return out


cdef KeyValue _revision_of(dict by_key, bytes key, long long rev):
    cdef KeyIndex ki = by_key.get(key)
    cdef Py_ssize_t i
    if ki is not None:
        i = _last_at_or_before(ki._revs, ki._n, rev)
        if i >= 0 and (<KeyValue>ki._revs[i]).mod_revision == rev:
            return <KeyValue>ki._revs[i]
    raise ValueError(f"corrupt snapshot: history names revision {rev} of key {key!r}, "
                     "which the keys lack")


def decode_history(data, dict by_key):
    """The History (``data``: bytes or any buffer), each change the revision of its key
    (``by_key``: key -> KeyIndex) whose mod_revision is ``rev``."""
    cdef _View v = _View(data)
    cdef const char* base = <const char*>v.buf.buf
    cdef Py_ssize_t pos = 0, end = v.buf.len, n, klen, i
    cdef long long rev
    cdef History out = History()
    cdef list changes
    while pos < end:
        _need(pos, 12, end)
        rev = _get_i64(base + pos)
        n = _get_u32(base + pos + 8)
        pos += 12
        changes = []
        for i in range(n):
            _need(pos, 4, end)
            klen = _get_u32(base + pos)
            pos += 4
            _need(pos, klen, end)
            changes.append(_revision_of(by_key, PyBytes_FromStringAndSize(base + pos, klen), rev))
            pos += klen
        out.append(rev, tuple(changes))
    return out


# -- the whole state at once: decode_state -----------------------------------------------------
#
# decode_history finds each change's KeyValue through a dict of every key (a bytes object made
# per change to look it up, and the dict itself: ~0.7 s of a 1M-key restart). decode_state
# finds it by revision instead: revisions since the compaction are dense (each one wrote
# something), so a table indexed by revision - first, filled while the keys are decoded, holds
# every KeyValue a change can name; a revision of several changes chains its KeyValues. A
# change's key is compared in place (memcmp), no object made.

cdef struct _RevTable:
    int64_t first  # the first revision the table covers
    Py_ssize_t span  # revisions covered
    Py_ssize_t* head  # per revision: its newest entry, or -1
    Py_ssize_t* next  # per entry: the entry before it at the same revision, or -1
    PyObject** kvs  # per entry: a KeyValue (borrowed: its KeyIndex holds it)
    Py_ssize_t n
    Py_ssize_t cap


cdef int _table_add(_RevTable* t, int64_t rev, KeyValue kv) except -1:
    cdef Py_ssize_t cap
    cdef Py_ssize_t* nxt
    cdef PyObject** kvs
    if t.n == t.cap:
        cap = t.cap * 2 + 64
        nxt = <Py_ssize_t*>PyMem_Realloc(t.next, cap * sizeof(Py_ssize_t))
        if nxt == NULL:
            raise MemoryError()
        t.next = nxt
        kvs = <PyObject**>PyMem_Realloc(t.kvs, cap * sizeof(PyObject*))
        if kvs == NULL:
            raise MemoryError()
        t.kvs = kvs
        t.cap = cap
    cdef Py_ssize_t slot = <Py_ssize_t>(rev - t.first)
    t.kvs[t.n] = <PyObject*>kv
    t.next[t.n] = t.head[slot]
    t.head[slot] = t.n
    t.n += 1
    return 0


cdef PyObject* _table_find(_RevTable* t, int64_t rev, const char* key, Py_ssize_t klen) noexcept:
    """The KeyValue of ``key`` at ``rev`` (the one entered last if several), or NULL."""
    if not t.first <= rev < t.first + t.span:
        return NULL
    cdef Py_ssize_t i = t.head[<Py_ssize_t>(rev - t.first)]
    cdef bytes k
    while i >= 0:
        k = (<KeyValue>t.kvs[i]).key
        if len(k) == klen and memcmp(PyBytes_AS_STRING(k), key, klen) == 0:
            return t.kvs[i]
        i = t.next[i]
    return NULL


cdef bint _history_bounds(const char* base, Py_ssize_t end, int64_t* first, int64_t* last,
                          Py_ssize_t* revisions, Py_ssize_t* changes) noexcept:
    """Walks a history section's records: its lowest and highest revision, how many
    revisions and changes; False if the records do not fill it exactly, or name a revision
    below 1 (damaged: ``last - first`` could then overflow and size the table wrong)."""
    cdef Py_ssize_t pos = 0, n, i, klen
    cdef int64_t rev
    revisions[0] = changes[0] = 0
    while pos < end:
        if end - pos < 12:
            return False
        rev = _get_i64(base + pos)
        n = _get_u32(base + pos + 8)
        pos += 12
        if rev < 1:
            return False
        if revisions[0] == 0 or rev < first[0]:
            first[0] = rev
        if revisions[0] == 0 or rev > last[0]:
            last[0] = rev
        revisions[0] += 1
        changes[0] += n
        for i in range(n):
            if end - pos < 4:
                return False
            klen = _get_u32(base + pos)
            pos += 4
            if end - pos < klen:
                return False
            pos += klen
    return True


cdef History _history_from_table(const char* base, Py_ssize_t end, _RevTable* t,
                                 Py_ssize_t revisions):
    cdef History out = History()
    cdef Py_ssize_t pos = 0, n, klen, i
    cdef int64_t rev
    cdef PyObject* found
    cdef tuple changes
    cdef object held
    out._reserve(revisions)
    while pos < end:  # (bounds checked by _history_bounds)
        rev = _get_i64(base + pos)
        n = _get_u32(base + pos + 8)
        pos += 12
        changes = PyTuple_New(n) if n != 1 else None
        for i in range(n):
            klen = _get_u32(base + pos)
            pos += 4
            found = _table_find(t, rev, base + pos, klen)
            if found == NULL:
                raise ValueError(
                    f"corrupt snapshot: history names revision {rev} of key "
                    f"{PyBytes_FromStringAndSize(base + pos, klen)!r}, which the keys lack")
            pos += klen
            if n == 1:
                held = <object>found
            else:
                Py_INCREF(<object>found)
                PyTuple_SET_ITEM(changes, i, <object>found)
        out._push(rev, held if n == 1 else changes)
    return out


def decode_state(keys, history):
    """(the KeyIndexes in the order encoded, the History): decode_keys and decode_history
    in one, each change found by its revision rather than through a dict of keys. ``keys``
    and ``history``: bytes or any buffer (views of a mapped file: no copies)."""
    cdef _View kv_view = _View(keys), h_view = _View(history)
    cdef const char* hbase = <const char*>h_view.buf.buf
    cdef Py_ssize_t hend = h_view.buf.len, revisions = 0, changes = 0
    cdef int64_t first = 0, last = 0
    cdef _RevTable table
    cdef list kis
    memset(&table, 0, sizeof(table))
    # A table only when the history's records are whole and its revisions dense (as they are:
    # every revision since the compaction wrote something); else the dict (same results, and
    # the same error for damaged records).
    cdef bint use_table = (_history_bounds(hbase, hend, &first, &last, &revisions, &changes)
                           and revisions > 0 and last - first < 2 * revisions + 1024)
    try:
        if use_table:
            table.first = first
            table.span = <Py_ssize_t>(last - first + 1)
            table.head = <Py_ssize_t*>PyMem_Malloc(table.span * sizeof(Py_ssize_t))
            if table.head == NULL:
                raise MemoryError()
            memset(table.head, 0xFF, table.span * sizeof(Py_ssize_t))  # all -1
            # An entry per change named (as many KeyValues as revisions since the compaction
            # wrote, in a whole snapshot); _table_add grows it if the keys hold more.
            table.next = <Py_ssize_t*>PyMem_Malloc((changes + 1) * sizeof(Py_ssize_t))
            table.kvs = <PyObject**>PyMem_Malloc((changes + 1) * sizeof(PyObject*))
            if table.next == NULL or table.kvs == NULL:
                raise MemoryError()
            table.cap = changes + 1
        kis = _decode_keys(<const char*>kv_view.buf.buf, kv_view.buf.len,
                           &table if use_table else NULL)
        if use_table:
            return kis, _history_from_table(hbase, hend, &table, revisions)
        return kis, decode_history(history, {(<KeyIndex>ki).key: ki for ki in kis})
    finally:
        PyMem_Free(table.head)
        PyMem_Free(table.next)
        PyMem_Free(table.kvs)
