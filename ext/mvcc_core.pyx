# cython: language_level=3
"""Compiled twin of kvstore/mvcc/kv.py and kvstore/mvcc/key_index.py.

Same classes, same methods, same results (tests/test_ext_twins.py checks it on random
histories). Typed fields turn the per-key work of every range scan (finding the revision
visible at a read revision) into C comparisons instead of attribute lookups.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcpy

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
    # Where the value field (tag to end of data) lies in ``encoded``: cut out for keys_only.
    cdef readonly unsigned int value_start
    cdef readonly unsigned int value_end

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
        if self.value_start == self.value_end:
            return b""
        cdef Py_ssize_t n = _value_len(self)
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self.encoded) + self.value_end - n, n)

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


cdef inline Py_ssize_t _last_at_or_before(list g, long long rev):
    """Index of the last KeyValue in g with mod_revision <= rev, or -1."""
    cdef Py_ssize_t lo = 0, hi = len(g), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if (<KeyValue>g[mid]).mod_revision <= rev:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


# Never part of a reference cycle (it holds lists of KeyValues only), so not tracked by the GC:
# a store of many keys costs full collections less.
@cython.no_gc
cdef class KeyIndex:
    cdef public bytes key
    cdef public list generations

    def __init__(self, bytes key):
        self.key = key
        self.generations = [[]]

    def put(self, KeyValue kv):
        (<list>self.generations[-1]).append(kv)

    def tombstone(self, KeyValue tomb):
        (<list>self.generations[-1]).append(tomb)
        self.generations.append([])

    def current(self):
        cdef list last = self.generations[-1]
        return last[-1] if last else None

    cpdef get(self, long long at_rev):
        cdef list gens = self.generations
        cdef Py_ssize_t last = len(gens) - 1, gi
        cdef list g
        for gi in range(last, -1, -1):
            g = gens[gi]
            if not g:
                continue
            if gi != last and (<KeyValue>g[-1]).mod_revision <= at_rev:
                return None
            if (<KeyValue>g[0]).mod_revision <= at_rev:
                return g[_last_at_or_before(g, at_rev)]
        return None

    def since(self, long long rev):
        cdef list out = []
        cdef list g
        for g in self.generations:
            if g and (<KeyValue>g[-1]).mod_revision >= rev:
                out.extend(g[_last_at_or_before(g, rev - 1) + 1:])
        return out

    def compact(self, long long at_rev):
        cdef list gens = self.generations
        cdef Py_ssize_t gi = 0, keep_from
        cdef list g
        while gi < len(gens) - 1:
            if (<KeyValue>(<list>gens[gi])[-1]).mod_revision > at_rev:
                break
            gi += 1
        g = gens[gi]
        if g:
            keep_from = _last_at_or_before(g, at_rev)
            if keep_from > 0:
                del g[:keep_from]
            if len(g) == 1 and gi != len(gens) - 1:
                gi += 1
        if gi:
            del gens[:gi]
        return len(gens) == 1 and not gens[0]

    def is_empty(self):
        return len(self.generations) == 1 and not self.generations[0]

    def revision_count(self):
        cdef Py_ssize_t n = 0
        cdef list g
        for g in self.generations:
            n += len(g)
        return n


def collect_visible(key_indexes, long long at_rev, Py_ssize_t limit, bint count_only):
    """(kvs, count) of the KeyValues visible at at_rev: the loop of every range read."""
    cdef list kvs = []
    cdef Py_ssize_t count = 0
    cdef KeyIndex ki
    for ki in key_indexes:
        kv = ki.get(at_rev)
        if kv is None:
            continue
        if not count_only and (limit <= 0 or count < limit):
            kvs.append(kv)
        count += 1
    return kvs, count


# -- snapshot codec (twin: kvstore/mvcc/state_codec.py, whose docstring gives the format) ------

cdef inline Py_ssize_t _value_len(KeyValue kv) noexcept:
    if kv.value_start == kv.value_end:
        return 0
    return <Py_ssize_t>_get_varint(<const unsigned char*>PyBytes_AS_STRING(kv.encoded)
                                   + kv.value_start + 1)


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


cdef list _generations_at(list generations, long long at_rev):
    """Twin of state_codec.generations_at."""
    cdef list out = []
    cdef list g
    cdef Py_ssize_t n
    for g in generations:
        n = _last_at_or_before(g, at_rev) + 1
        if n < len(g):
            out.append(g[:n])
            break
        out.append(g)
    return out


def generations_at(list generations, long long at_rev):
    return _generations_at(generations, at_rev)


def encode_keys(key_indexes, long long at_rev=0):
    cdef list kis = list(key_indexes)
    cdef list all_gens = [(_generations_at(ki.generations, at_rev) if at_rev else ki.generations)
                          for ki in kis]
    cdef Py_ssize_t size = 0, i, n
    cdef KeyIndex ki
    cdef list g, gens
    cdef KeyValue kv
    for i in range(len(kis)):
        ki = kis[i]
        size += 8 + len(ki.key)
        for g in <list>all_gens[i]:
            size += 4
            for kv in g:
                size += 36 + _value_len(kv)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    for i in range(len(kis)):
        ki = kis[i]
        gens = all_gens[i]
        p = _put_bytes(p, ki.key)
        p = _put_u32(p, len(gens))
        for g in gens:
            p = _put_u32(p, len(g))
            for kv in g:
                p = _put_i64(p, kv.create_revision)
                p = _put_i64(p, kv.mod_revision)
                p = _put_i64(p, kv.version)
                p = _put_i64(p, kv.lease)
                n = _value_len(kv)
                p = _put_u32(p, n)
                memcpy(p, PyBytes_AS_STRING(kv.encoded) + kv.value_end - n, n)
                p += n
    return out


def decode_keys(bytes data):
    cdef const char* base = PyBytes_AS_STRING(data)
    cdef Py_ssize_t pos = 0, end = len(data), n, ngens, nkvs, i, j
    cdef list out = [], gens, g
    cdef KeyIndex ki
    cdef KeyValue kv
    cdef bytes key
    while pos < end:
        _need(pos, 4, end)
        n = _get_u32(base + pos)
        pos += 4
        _need(pos, n + 4, end)
        key = PyBytes_FromStringAndSize(base + pos, n)
        pos += n
        ngens = _get_u32(base + pos)
        pos += 4
        ki = KeyIndex.__new__(KeyIndex)
        ki.key = key
        gens = []
        for i in range(ngens):
            _need(pos, 4, end)
            nkvs = _get_u32(base + pos)
            pos += 4
            g = []
            for j in range(nkvs):
                _need(pos, 36, end)
                n = _get_u32(base + pos + 32)
                _need(pos + 36, n, end)
                g.append(_new_kv(key, _get_i64(base + pos), _get_i64(base + pos + 8),
                                 _get_i64(base + pos + 16), base + pos + 36, n,
                                 _get_i64(base + pos + 24)))
                pos += 36 + n
            gens.append(g)
        ki.generations = gens
        out.append(ki)
    return out


def encode_history(history):
    cdef Py_ssize_t size = 0
    cdef tuple entry
    cdef KeyValue kv
    for entry in history:
        size += 12
        for kv in entry[1]:
            size += 4 + len(kv.key)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    for entry in history:
        p = _put_i64(p, entry[0])
        p = _put_u32(p, len(entry[1]))
        for kv in entry[1]:
            p = _put_bytes(p, kv.key)
    return out


cdef KeyValue _revision_of(dict by_key, bytes key, long long rev):
    cdef KeyIndex ki = by_key.get(key)
    cdef list g
    cdef Py_ssize_t i
    if ki is not None:
        for g in ki.generations:
            if g and (<KeyValue>g[-1]).mod_revision >= rev:
                i = _last_at_or_before(g, rev)
                if i >= 0 and (<KeyValue>g[i]).mod_revision == rev:
                    return g[i]
                break
    raise ValueError(f"corrupt snapshot: history names revision {rev} of key {key!r}, "
                     "which the keys lack")


def decode_history(bytes data, dict by_key):
    cdef const char* base = PyBytes_AS_STRING(data)
    cdef Py_ssize_t pos = 0, end = len(data), n, klen, i
    cdef long long rev
    cdef list out = [], changes
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
        out.append((rev, tuple(changes)))
    return out
