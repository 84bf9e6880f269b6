# KeyIndexes in key order (included by mvcc_core.pyx). Twin: kvstore/mvcc/ordered_keys.py,
# whose docstring gives the layout: chunks of at most _CHUNK_MAX references, sorted, none empty.

cdef enum:
    _CHUNK_MAX = 1024


cdef struct _Chunk:
    Py_ssize_t n
    PyObject** items  # owned references to KeyIndexes; room for _CHUNK_MAX + 1


cdef inline int _key_cmp(bytes a, bytes b) noexcept:
    cdef Py_ssize_t la = len(a), lb = len(b)
    cdef int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la if la < lb else lb)
    if c:
        return c
    return (la > lb) - (la < lb)


cdef inline bytes _ki_key(PyObject* p):
    return (<KeyIndex>p).key


@cython.no_gc  # holds KeyIndexes, which hold KeyValues: no cycles
cdef class OrderedKeys:
    cdef _Chunk* _chunks
    cdef Py_ssize_t _nchunks
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _size

    def __init__(self, key_indexes=()):
        cdef KeyIndex ki
        for ki in key_indexes:  # in key order (a snapshot's) each goes straight to the end
            if self._nchunks and _key_cmp(ki.key, self._last_key()) > 0:
                self._append_last(ki)
            else:
                self.add(ki)

    cdef bytes _last_key(self):
        cdef _Chunk* c = &self._chunks[self._nchunks - 1]
        return _ki_key(c.items[c.n - 1])

    cdef int _append_last(self, KeyIndex ki) except -1:
        """Appends a key greater than every key held (a new chunk when the last is full)."""
        if self._chunks[self._nchunks - 1].n == _CHUNK_MAX:
            self._insert_chunk(self._nchunks)
        cdef _Chunk* c = &self._chunks[self._nchunks - 1]
        Py_INCREF(ki)
        c.items[c.n] = <PyObject*>ki
        c.n += 1
        self._size += 1
        return 0

    def __dealloc__(self):
        cdef Py_ssize_t ci, i
        for ci in range(self._nchunks):
            for i in range(self._chunks[ci].n):
                Py_DECREF(<object>self._chunks[ci].items[i])
            PyMem_Free(self._chunks[ci].items)
        PyMem_Free(self._chunks)

    cdef int _insert_chunk(self, Py_ssize_t at) except -1:
        cdef _Chunk* grown
        cdef PyObject** items = <PyObject**>PyMem_Malloc((_CHUNK_MAX + 1) * sizeof(PyObject*))
        if items == NULL:
            raise MemoryError()
        if self._nchunks == self._cap:
            grown = <_Chunk*>PyMem_Realloc(self._chunks, (self._cap * 2 or 8) * sizeof(_Chunk))
            if grown == NULL:
                PyMem_Free(items)
                raise MemoryError()
            self._chunks = grown
            self._cap = self._cap * 2 or 8
        memmove(self._chunks + at + 1, self._chunks + at, (self._nchunks - at) * sizeof(_Chunk))
        self._chunks[at].n = 0
        self._chunks[at].items = items
        self._nchunks += 1
        return 0

    cdef void _drop_chunk(self, Py_ssize_t at) noexcept:
        PyMem_Free(self._chunks[at].items)
        memmove(self._chunks + at, self._chunks + at + 1, (self._nchunks - at - 1) * sizeof(_Chunk))
        self._nchunks -= 1

    cdef Py_ssize_t _find_chunk(self, bytes key) noexcept:
        """The first chunk whose last key is >= key; the last chunk if none; -1 if empty."""
        cdef Py_ssize_t lo = 0, hi = self._nchunks, mid
        cdef _Chunk* c
        while lo < hi:
            mid = (lo + hi) >> 1
            c = &self._chunks[mid]
            if _key_cmp(_ki_key(c.items[c.n - 1]), key) < 0:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < self._nchunks else self._nchunks - 1

    cdef Py_ssize_t _bisect(self, Py_ssize_t ci, bytes key) noexcept:
        cdef _Chunk* c = &self._chunks[ci]
        cdef Py_ssize_t lo = 0, hi = c.n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if _key_cmp(_ki_key(c.items[mid]), key) < 0:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def __len__(self):
        return self._size

    def add(self, KeyIndex ki):
        cdef Py_ssize_t ci, pi, half
        cdef _Chunk* c
        if self._nchunks == 0:
            self._insert_chunk(0)
            ci = pi = 0
        else:
            ci = self._find_chunk(ki.key)
            pi = self._bisect(ci, ki.key)
        c = &self._chunks[ci]
        memmove(c.items + pi + 1, c.items + pi, (c.n - pi) * sizeof(PyObject*))
        Py_INCREF(ki)
        c.items[pi] = <PyObject*>ki
        c.n += 1
        self._size += 1
        if c.n > _CHUNK_MAX:
            self._insert_chunk(ci + 1)  # may move the chunk array: index it again
            half = self._chunks[ci].n >> 1
            self._chunks[ci + 1].n = self._chunks[ci].n - half
            memcpy(self._chunks[ci + 1].items, self._chunks[ci].items + half,
                   self._chunks[ci + 1].n * sizeof(PyObject*))
            self._chunks[ci].n = half

    cdef int _locate(self, bytes key, Py_ssize_t* ci, Py_ssize_t* pi) noexcept:
        """Where ``key`` is or would go; returns 1 if it is there."""
        if self._nchunks == 0:
            ci[0] = pi[0] = 0
            return 0
        ci[0] = self._find_chunk(key)
        pi[0] = self._bisect(ci[0], key)
        cdef _Chunk* c = &self._chunks[ci[0]]
        return pi[0] < c.n and _key_cmp(_ki_key(c.items[pi[0]]), key) == 0

    def remove(self, bytes key):
        cdef Py_ssize_t ci, pi
        if not self._locate(key, &ci, &pi):
            return False
        cdef _Chunk* c = &self._chunks[ci]
        Py_DECREF(<object>c.items[pi])
        memmove(c.items + pi, c.items + pi + 1, (c.n - pi - 1) * sizeof(PyObject*))
        c.n -= 1
        self._size -= 1
        if c.n == 0:
            self._drop_chunk(ci)
        return True

    def get(self, bytes key):
        """The KeyIndex of ``key``, or None."""
        cdef Py_ssize_t ci, pi
        if not self._locate(key, &ci, &pi):
            return None
        return <object>self._chunks[ci].items[pi]

    def __contains__(self, bytes key):
        cdef Py_ssize_t ci, pi
        return bool(self._locate(key, &ci, &pi))

    cdef Py_ssize_t _rank(self, bytes key) noexcept:
        cdef Py_ssize_t ci, pi, i, n = 0
        self._locate(key, &ci, &pi)
        for i in range(ci):
            n += self._chunks[i].n
        return n + pi

    def rank(self, bytes key):
        return self._rank(key)

    def count(self, bytes key, bytes end):
        if not end:
            return self._size - self._rank(key)
        if _key_cmp(end, key) <= 0:
            return 0
        return self._rank(end) - self._rank(key)

    def __iter__(self):
        cdef Py_ssize_t ci = 0, pi = 0
        while ci < self._nchunks:
            if pi < self._chunks[ci].n:
                yield <object>self._chunks[ci].items[pi]
                pi += 1
            else:
                ci += 1
                pi = 0

    def scan(self, bytes key, bytes end):
        """KeyIndexes in [key, end) in key order (``end == b""``: no upper bound). Reads the
        structure as it is at each step: the caller does not change it meanwhile."""
        cdef Py_ssize_t ci, pi
        cdef bint bounded = len(end) > 0
        cdef object ki
        self._locate(key, &ci, &pi)
        while ci < self._nchunks:
            if pi < self._chunks[ci].n:
                ki = <object>self._chunks[ci].items[pi]
                if bounded and _key_cmp((<KeyIndex>ki).key, end) >= 0:
                    return
                yield ki
                pi += 1
            else:
                ci += 1
                pi = 0

    def keys_from(self, bytes key, Py_ssize_t n):
        cdef list out = []
        cdef Py_ssize_t ci, pi
        self._locate(key, &ci, &pi)
        while ci < self._nchunks and len(out) < n:
            if pi < self._chunks[ci].n:
                out.append(_ki_key(self._chunks[ci].items[pi]))
                pi += 1
            else:
                ci += 1
                pi = 0
        return out

    def collect(self, bytes key, bytes end, long long at_rev, Py_ssize_t limit, bint count_only,
                bint full_count=True):
        """collect_visible over scan(key, end), in one C loop."""
        cdef list kvs = []
        cdef Py_ssize_t ci, pi, j, count = 0
        cdef bint bounded = len(end) > 0
        cdef KeyIndex ki
        cdef _Chunk* c
        self._locate(key, &ci, &pi)
        while ci < self._nchunks:
            c = &self._chunks[ci]
            while pi < c.n:
                ki = <KeyIndex>c.items[pi]
                if bounded and _key_cmp(ki.key, end) >= 0:
                    return kvs, count
                j = _last_at_or_before(ki._revs, ki._n, at_rev)
                if j >= 0 and (<KeyValue>ki._revs[j]).version != 0:
                    if not count_only and (limit <= 0 or count < limit):
                        kvs.append(<object>ki._revs[j])
                    elif not full_count:
                        return kvs, count
                    count += 1
                pi += 1
            ci += 1
            pi = 0
        return kvs, count
