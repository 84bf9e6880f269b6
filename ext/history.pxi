# The store's history of revisions (included by mvcc_core.pyx). Twin: kvstore/mvcc/history.py.
#
# Per revision: its number in one C array and one reference in another: the KeyValue itself
# when the revision changed one key (nearly always), else a tuple of them. 16 bytes, where a
# (rev, (kv,)) pair of tuples and an int cost ~150. Revisions are dropped from the front
# (compaction) by moving a start offset; the arrays are packed again when half is dead.


@cython.no_gc  # holds KeyValues and tuples of them: no cycles
cdef class History:
    cdef int64_t* _revs
    cdef PyObject** _changes
    cdef Py_ssize_t _start  # first live slot
    cdef Py_ssize_t _n  # live revisions
    cdef Py_ssize_t _cap

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self._start, self._start + self._n):
            Py_DECREF(<object>self._changes[i])
        PyMem_Free(self._revs)
        PyMem_Free(self._changes)

    cdef int _grow(self, Py_ssize_t at_least=0) except -1:
        cdef Py_ssize_t cap = max(self._cap * 2 or 64, at_least)
        cdef int64_t* revs = <int64_t*>PyMem_Malloc(cap * sizeof(int64_t))
        cdef PyObject** changes = <PyObject**>PyMem_Malloc(cap * sizeof(PyObject*))
        if revs == NULL or changes == NULL:
            PyMem_Free(revs)
            PyMem_Free(changes)
            raise MemoryError()
        memcpy(revs, self._revs + self._start, self._n * sizeof(int64_t))
        memcpy(changes, self._changes + self._start, self._n * sizeof(PyObject*))
        PyMem_Free(self._revs)
        PyMem_Free(self._changes)
        self._revs, self._changes, self._cap, self._start = revs, changes, cap, 0
        return 0

    cdef int _reserve(self, Py_ssize_t cap) except -1:
        """Room for ``cap`` revisions in all (an empty History about to be filled)."""
        while self._cap < cap:
            self._grow(cap)
        return 0

    def append(self, long long rev, tuple changes):
        self._push(rev, changes[0] if len(changes) == 1 else changes)

    cdef int _push(self, int64_t rev, object held) except -1:
        """Appends a revision as held: its KeyValue when it made one change, else the tuple."""
        if self._start + self._n == self._cap:
            if self._start and self._start >= self._cap // 2:  # half dead: pack in place
                memmove(self._revs, self._revs + self._start, self._n * sizeof(int64_t))
                memmove(self._changes, self._changes + self._start, self._n * sizeof(PyObject*))
                self._start = 0
            else:
                self._grow()
        Py_INCREF(held)
        self._revs[self._start + self._n] = rev
        self._changes[self._start + self._n] = <PyObject*>held
        self._n += 1
        return 0

    cdef inline tuple _changes_at(self, Py_ssize_t i):
        held = <object>self._changes[self._start + i]
        return held if type(held) is tuple else (held,)

    def __len__(self):
        return self._n

    def __getitem__(self, Py_ssize_t i):
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("history index out of range")
        return (self._revs[self._start + i], self._changes_at(i))

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self._n):
            yield (self._revs[self._start + i], self._changes_at(i))

    cdef Py_ssize_t _index_from(self, long long rev) noexcept:
        cdef Py_ssize_t lo = 0, hi = self._n, mid
        cdef int64_t* revs = self._revs + self._start
        while lo < hi:
            mid = (lo + hi) >> 1
            if revs[mid] < rev:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def index_from(self, long long rev):
        return self._index_from(rev)

    cdef void _drop_first(self, Py_ssize_t count) noexcept:
        cdef Py_ssize_t i
        for i in range(self._start, self._start + count):
            Py_DECREF(<object>self._changes[i])
        self._start += count
        self._n -= count

    def compact(self, long long rev):
        self._drop_first(self._index_from(rev))
        if self._n == 0 or self._revs[self._start] != rev:
            return
        cdef tuple kept = tuple([kv for kv in self._changes_at(0) if (<KeyValue>kv).version])
        if not kept:
            self._drop_first(1)
            return
        cdef object held = kept[0] if len(kept) == 1 else kept
        Py_INCREF(held)
        Py_DECREF(<object>self._changes[self._start])
        self._changes[self._start] = <PyObject*>held

    def matching(self, Py_ssize_t i, Py_ssize_t stop, bytes key, end, bint no_put,
                 bint no_delete, Py_ssize_t max_bytes):
        """A watcher's catch-up: the changes of revisions i..stop-1 (positions) on ``key``
        (end None: that key; b"": every key from it; else [key, end)) that its filters let
        through, whole revisions until their keys and values pass ``max_bytes``; and the
        position after the last revision read."""
        cdef list out = []
        cdef Py_ssize_t size = 0, j = i, k, n
        cdef bytes b_end = end if end is not None else None
        cdef bint single = end is None, open_end = end is not None and len(end) == 0
        cdef PyObject* held
        cdef KeyValue kv
        cdef tuple many
        if j < 0:
            j = 0
        if stop > self._n:
            stop = self._n
        while j < stop and size < max_bytes:
            held = self._changes[self._start + j]
            if type(<object>held) is tuple:
                many = <tuple>held
                n = len(many)
            else:
                many = None
                n = 1
            for k in range(n):
                kv = <KeyValue>(many[k] if many is not None else <object>held)
                if single:
                    if _bytes_cmp(kv.key, key) != 0:
                        continue
                elif _bytes_cmp(kv.key, key) < 0 or (not open_end and _bytes_cmp(kv.key, b_end) >= 0):
                    continue
                if (no_delete if kv.version == 0 else no_put):
                    continue
                out.append(kv)
                size += len(kv.key)
                if _value_start(kv) != _value_end(kv):
                    size += _value_len(kv)
            j += 1
        return out, j




cdef inline int _bytes_cmp(bytes a, bytes b) noexcept:
    """memcmp order of two byte strings, as bytes compare."""
    cdef Py_ssize_t la = len(a), lb = len(b)
    cdef int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la if la < lb else lb)
    if c != 0:
        return c
    return (la > lb) - (la < lb)
