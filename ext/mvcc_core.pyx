# cython: language_level=3
"""Compiled twin of kvstore/mvcc/kv.py and kvstore/mvcc/key_index.py.

Same classes, same methods, same results (tests/test_ext_twins.py checks it on random
histories). Typed fields turn the per-key work of every range scan (finding the revision
visible at a read revision) into C comparisons instead of attribute lookups.
"""

cimport cython


cdef class KeyValue:
    cdef public bytes key
    cdef public long long create_revision
    cdef public long long mod_revision
    cdef public long long version
    cdef public bytes value
    cdef public long long lease

    def __init__(self, bytes key, long long create_revision, long long mod_revision,
                 long long version, bytes value, long long lease):
        self.key = key
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.value = value
        self.lease = lease

    @classmethod
    def tombstone(cls, bytes key, long long revision):
        return cls(key, 0, revision, 0, b"", 0)

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
