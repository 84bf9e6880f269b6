# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True
"""Compiled twin of kvstore/bbolt/page_codec.py: bbolt's leaf and branch pages laid out and
read in C loops (a snapshot of millions of revisions is millions of elements). The layout and
the API are page_codec.py's; tests/test_bbolt.py compares the two."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

cdef enum:
    PAGE_HEADER_SIZE = 16
    ELEMENT_SIZE = 16
    BRANCH_PAGE = 0x01
    LEAF_PAGE = 0x02


cdef inline void _put16(char* p, uint16_t v) noexcept:
    memcpy(p, &v, 2)  # little-endian hosts only, as bbolt itself writes its structs


cdef inline void _put32(char* p, uint32_t v) noexcept:
    memcpy(p, &v, 4)


cdef inline void _put64(char* p, uint64_t v) noexcept:
    memcpy(p, &v, 8)


cdef inline uint16_t _get16(const uint8_t* p) noexcept:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef inline uint32_t _get32(const uint8_t* p) noexcept:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint64_t _get64(const uint8_t* p) noexcept:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline void _header(char* p, uint64_t pgid, uint16_t flags, uint16_t count,
                         uint32_t overflow) noexcept:
    _put64(p, pgid)
    _put16(p + 8, flags)
    _put16(p + 10, count)
    _put32(p + 12, overflow)


cdef Py_ssize_t _bytes_len(object o) except -1:
    if type(o) is not bytes:
        raise TypeError(f"expected bytes, got {type(o).__name__}")
    return PyBytes_GET_SIZE(o)


def pack_leaf_pages(list keys, list values, int element_flags, uint64_t first_pgid,
                    Py_ssize_t page_size, bint final):
    cdef Py_ssize_t n = PyList_GET_SIZE(keys), start = 0, end, i, size, grown, pages
    cdef Py_ssize_t total = 0, base, data, elem, klen, vlen, packed
    cdef uint64_t pgid = first_pgid
    cdef list plan = []  # (start, end, pages) of each page
    cdef list pgids = [], firsts = []
    cdef object k, v, out
    cdef char* buf
    if PyList_GET_SIZE(values) != n:
        raise ValueError("keys and values differ in length")
    while start < n:
        size = PAGE_HEADER_SIZE
        end = start
        while end < n:
            grown = (size + ELEMENT_SIZE + _bytes_len(<object>PyList_GET_ITEM(keys, end))
                     + _bytes_len(<object>PyList_GET_ITEM(values, end)))
            if grown > page_size and end > start:
                break
            size = grown
            end += 1
        if end == n and not final and size <= page_size:
            break
        pages = (size + page_size - 1) // page_size
        plan.append((start, end, pages))
        total += pages * page_size
        start = end
    packed = start
    out = PyBytes_FromStringAndSize(NULL, total)
    buf = PyBytes_AS_STRING(out)
    memset(buf, 0, total)
    base = 0
    for start, end, pages in plan:
        _header(buf + base, pgid, LEAF_PAGE, <uint16_t>(end - start), <uint32_t>(pages - 1))
        data = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * (end - start)
        for i in range(start, end):
            elem = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * (i - start)
            k = <object>PyList_GET_ITEM(keys, i)
            v = <object>PyList_GET_ITEM(values, i)
            klen = PyBytes_GET_SIZE(k)
            vlen = PyBytes_GET_SIZE(v)
            _put32(buf + elem, <uint32_t>element_flags)
            _put32(buf + elem + 4, <uint32_t>(data - elem))
            _put32(buf + elem + 8, <uint32_t>klen)
            _put32(buf + elem + 12, <uint32_t>vlen)
            memcpy(buf + data, PyBytes_AS_STRING(k), klen)
            data += klen
            memcpy(buf + data, PyBytes_AS_STRING(v), vlen)
            data += vlen
        pgids.append(pgid)
        firsts.append(<object>PyList_GET_ITEM(keys, start))
        pgid += pages
        base += pages * page_size
    return out, pgids, firsts, packed


def pack_branch_pages(list keys, list pgids, uint64_t first_pgid, Py_ssize_t page_size):
    cdef Py_ssize_t n = PyList_GET_SIZE(keys), start = 0, end, i, size, grown, pages
    cdef Py_ssize_t total = 0, base, data, elem, klen
    cdef uint64_t pgid = first_pgid
    cdef list plan = []
    cdef list page_ids = [], firsts = []
    cdef object k, out
    cdef char* buf
    if PyList_GET_SIZE(pgids) != n:
        raise ValueError("keys and page ids differ in length")
    while start < n:
        size = PAGE_HEADER_SIZE
        end = start
        while end < n:
            grown = size + ELEMENT_SIZE + _bytes_len(<object>PyList_GET_ITEM(keys, end))
            if grown > page_size and end > start:
                break
            size = grown
            end += 1
        pages = (size + page_size - 1) // page_size
        plan.append((start, end, pages))
        total += pages * page_size
        start = end
    out = PyBytes_FromStringAndSize(NULL, total)
    buf = PyBytes_AS_STRING(out)
    memset(buf, 0, total)
    base = 0
    for start, end, pages in plan:
        _header(buf + base, pgid, BRANCH_PAGE, <uint16_t>(end - start), <uint32_t>(pages - 1))
        data = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * (end - start)
        for i in range(start, end):
            elem = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * (i - start)
            k = <object>PyList_GET_ITEM(keys, i)
            klen = PyBytes_GET_SIZE(k)
            _put32(buf + elem, <uint32_t>(data - elem))
            _put32(buf + elem + 4, <uint32_t>klen)
            _put64(buf + elem + 8, <uint64_t>(<object>PyList_GET_ITEM(pgids, i)))
            memcpy(buf + data, PyBytes_AS_STRING(k), klen)
            data += klen
        page_ids.append(pgid)
        firsts.append(<object>PyList_GET_ITEM(keys, start))
        pgid += pages
        base += pages * page_size
    return out, page_ids, firsts


cdef Py_ssize_t _page_start(const uint8_t[::1] view, Py_ssize_t offset, Py_ssize_t end,
                            int kind, str name, uint16_t* count) except -1:
    """Checks the page header at ``offset``; returns the bytes' end (``end`` clamped)."""
    cdef Py_ssize_t n = view.shape[0]
    cdef uint16_t flags
    if offset < 0 or offset + PAGE_HEADER_SIZE > n:
        raise ValueError(f"page header at {offset} lies past the end ({n} bytes)")
    flags = _get16(&view[offset + 8])
    count[0] = _get16(&view[offset + 10])
    if end > n:
        end = n
    if not flags & kind:
        raise ValueError(f"page at {offset} is not a {name} page (flags {flags:#x})")
    if offset + PAGE_HEADER_SIZE + ELEMENT_SIZE * <Py_ssize_t>count[0] > end:
        raise ValueError(f"{name} page at {offset}: {count[0]} elements overrun the page")
    return end


def read_leaf(buf, Py_ssize_t offset, Py_ssize_t end):
    cdef const uint8_t[::1] view = buf
    cdef uint16_t count
    cdef Py_ssize_t i, elem, k
    cdef uint32_t eflags, pos, ksize, vsize
    cdef const uint8_t* p
    cdef list out = []
    end = _page_start(view, offset, end, LEAF_PAGE, "leaf", &count)
    for i in range(count):
        elem = offset + PAGE_HEADER_SIZE + ELEMENT_SIZE * i
        p = &view[elem]
        eflags = _get32(p)
        pos = _get32(p + 4)
        ksize = _get32(p + 8)
        vsize = _get32(p + 12)
        k = elem + pos
        if k + <Py_ssize_t>ksize + <Py_ssize_t>vsize > end:
            raise ValueError(f"leaf page at {offset}: element {i} lies outside the page")
        out.append((eflags, PyBytes_FromStringAndSize(<const char*>&view[0] + k, ksize),
                    PyBytes_FromStringAndSize(<const char*>&view[0] + k + ksize, vsize)))
    return out


def read_branch(buf, Py_ssize_t offset, Py_ssize_t end):
    cdef const uint8_t[::1] view = buf
    cdef uint16_t count
    cdef Py_ssize_t i, elem, k
    cdef uint32_t pos, ksize
    cdef const uint8_t* p
    cdef list out = []
    end = _page_start(view, offset, end, BRANCH_PAGE, "branch", &count)
    for i in range(count):
        elem = offset + PAGE_HEADER_SIZE + ELEMENT_SIZE * i
        p = &view[elem]
        pos = _get32(p)
        ksize = _get32(p + 4)
        k = elem + pos
        if k + <Py_ssize_t>ksize > end:
            raise ValueError(f"branch page at {offset}: element {i} lies outside the page")
        out.append((PyBytes_FromStringAndSize(<const char*>&view[0] + k, ksize), _get64(p + 8)))
    return out
