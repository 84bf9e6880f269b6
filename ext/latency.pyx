# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True
"""Compiled twin of kvstore/load/histogram.py's bucketing of latencies (``tally``): a worker's
second of latencies, tens of thousands of floats, into an HDR histogram's counts in one C loop
rather than a few Python expressions a value. tests/test_load_histogram.py compares the two."""
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.stdint cimport int64_t, uint64_t

cdef enum:
    LOWEST_US = 1
    HIGHEST_US = 60_000_000
    SIGNIFICANT_BITS = 11
    SUB_BUCKETS = 1 << SIGNIFICANT_BITS
    HALF = SIGNIFICANT_BITS - 1


cdef inline int _bit_length(int64_t v) noexcept:
    return 64 - __builtin_clzll(<unsigned long long>v)


cdef extern from *:
    int __builtin_clzll(unsigned long long)


cdef inline Py_ssize_t _index(int64_t v) noexcept:
    # HdrHistogram._counts_index_for, 1 µs units and 3 significant figures (from_micros's)
    cdef int b
    if v < SUB_BUCKETS:
        return v
    b = _bit_length(v) - SIGNIFICANT_BITS
    return ((b + 1) << HALF) + (v >> b) - (1 << HALF)


def tally(list latencies, counts):
    """Adds each latency (seconds, floats) to ``counts`` (an HdrHistogram's counts array) at
    the bucket of its whole microseconds, clamped into 1 µs..60 s; returns the lowest and the
    highest of those microseconds (0, 0 for none)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(latencies), i, size = len(counts)
    cdef uint64_t* local
    cdef object item
    cdef double us
    cdef int64_t v, low = HIGHEST_US, high = LOWEST_US
    if n == 0:
        return 0, 0
    local = <uint64_t*>PyMem_Calloc(size, sizeof(uint64_t))
    if local is NULL:
        raise MemoryError()
    try:
        for i in range(n):
            item = <object>PyList_GET_ITEM(latencies, i)
            us = (PyFloat_AS_DOUBLE(item) if type(item) is float else <double>item) * 1e6
            if us != us:
                raise ValueError("cannot convert float NaN to integer")  # as int() says
            # int() truncates toward zero; clamped as from_micros clamps
            v = LOWEST_US if us < LOWEST_US else HIGHEST_US if us > HIGHEST_US else <int64_t>us
            if v < low:
                low = v
            if v > high:
                high = v
            local[_index(v)] += 1
        for i in range(size):
            if local[i]:
                counts[i] += local[i]
    finally:
        PyMem_Free(local)
    return low, high
