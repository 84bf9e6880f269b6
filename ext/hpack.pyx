# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True
"""Compiled twin of kvstore/h2/hpack.py (HPACK, RFC 7541).

Same classes, functions, results and errors (tests/test_hpack.py checks it on the RFC examples
and on random and garbage input). The tables (static table, Huffman code, Huffman decoding
automaton) and HPACKError come from the pure module, so there is one copy of each; here they
are copied into C arrays. Decoding walks the block through a C pointer; indexed fields hand out
the table's own (name, value) tuples, so a block that is all indices allocates only its list.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from kvstore.h2 import hpack as _py

HPACKError = _py.HPACKError
STATIC_TABLE = _py.STATIC_TABLE
HUFFMAN_CODE_LENGTHS = _py.HUFFMAN_CODE_LENGTHS
HUFFMAN_CODES = _py.HUFFMAN_CODES
DEFAULT_NEVER_INDEX = _py.DEFAULT_NEVER_INDEX
DEFAULT_NO_INDEX = _py.DEFAULT_NO_INDEX

cdef extern from "Python.h":
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE" (PyObject* o)

cdef enum:
    STATIC_COUNT = 61
    ENTRY_OVERHEAD = 32
    FSM_EMIT = 0x100
    FSM_FAIL = 0x200
    CONTINUATION_SHIFT_LIMIT = 35  # 7 * MAX_CONTINUATION_BYTES

cdef uint64_t INTEGER_LIMIT = _py.INTEGER_LIMIT

# Index i (1..61) of the static table is _STATIC[i].
cdef tuple _STATIC = (None,) + _py.STATIC_TABLE
cdef dict _STATIC_FIELD_INDEX = _py.STATIC_FIELD_INDEX
cdef dict _STATIC_NAME_INDEX = _py.STATIC_NAME_INDEX

cdef uint32_t _HCODE[257]
cdef uint8_t _HLEN[257]
cdef uint32_t _FSM[4096]
cdef uint8_t _ACCEPT[256]


cdef void _load_tables() except *:
    cdef int i
    assert _py.STATIC_COUNT == STATIC_COUNT and _py.ENTRY_OVERHEAD == ENTRY_OVERHEAD
    assert _py.FSM_EMIT == FSM_EMIT and _py.FSM_FAIL == FSM_FAIL
    assert 7 * _py.MAX_CONTINUATION_BYTES == CONTINUATION_SHIFT_LIMIT
    for i in range(257):
        _HCODE[i] = _py.HUFFMAN_CODES[i]
        _HLEN[i] = _py.HUFFMAN_CODE_LENGTHS[i]
    for i in range(4096):
        _FSM[i] = _py.HUFFMAN_FSM[i]
    for i in range(256):
        _ACCEPT[i] = _py.HUFFMAN_ACCEPT[i]


_load_tables()


# -- Huffman --------------------------------------------------------------------------------------

cdef inline Py_ssize_t _huffman_bits(const uint8_t* s, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i, bits = 0
    for i in range(n):
        bits += _HLEN[s[i]]
    return bits


cdef void _huffman_write(const uint8_t* s, Py_ssize_t n, uint8_t* out) noexcept:
    """Writes the code of s (padded with ones) to out, which holds (bits + 7) // 8 bytes."""
    cdef uint64_t acc = 0
    cdef int bits = 0
    cdef Py_ssize_t i, j = 0
    cdef uint8_t c
    for i in range(n):
        c = s[i]
        acc = (acc << _HLEN[c]) | _HCODE[c]
        bits += _HLEN[c]
        while bits >= 8:
            bits -= 8
            out[j] = <uint8_t>(acc >> bits)
            j += 1
    if bits:
        out[j] = <uint8_t>((acc << (8 - bits)) | (0xFF >> bits))


cdef Py_ssize_t _huffman_read(const uint8_t* s, Py_ssize_t n, uint8_t* out) except -1:
    """Decodes n bytes at s into out (room for 2n bytes); the decoded length."""
    cdef Py_ssize_t i, j = 0
    cdef uint32_t e, state = 0
    cdef uint8_t b
    for i in range(n):
        b = s[i]
        e = _FSM[(state << 4) | (b >> 4)]
        if e & FSM_FAIL:
            raise HPACKError("EOS in Huffman string")
        if e & FSM_EMIT:
            out[j] = <uint8_t>(e >> 16)
            j += 1
        e = _FSM[((e & 0xFF) << 4) | (b & 0xF)]
        if e & FSM_FAIL:
            raise HPACKError("EOS in Huffman string")
        if e & FSM_EMIT:
            out[j] = <uint8_t>(e >> 16)
            j += 1
        state = e & 0xFF
    if not _ACCEPT[state]:
        raise HPACKError("invalid Huffman padding")
    return j


cdef bytes _as_bytes(data):
    if type(data) is bytes:
        return <bytes>data
    return bytes(data)


def huffman_encoded_length(bytes data):
    """Bytes that huffman_encode(data) produces."""
    return (_huffman_bits(<const uint8_t*>PyBytes_AS_STRING(data), len(data)) + 7) >> 3


def huffman_encode(bytes data):
    """The Huffman code of data, padded to a byte with the high bits of EOS (ones)."""
    cdef const uint8_t* s = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = len(data)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, (_huffman_bits(s, n) + 7) >> 3)
    _huffman_write(s, n, <uint8_t*>PyBytes_AS_STRING(out))
    return out


def huffman_decode(data):
    """Decodes a Huffman-coded string; HPACKError on EOS or padding that is not 1-7 one bits."""
    cdef bytes b = _as_bytes(data)
    cdef Py_ssize_t n = len(b)
    cdef uint8_t* out = <uint8_t*>PyMem_Malloc(2 * n + 1)
    if out == NULL:
        raise MemoryError()
    try:
        n = _huffman_read(<const uint8_t*>PyBytes_AS_STRING(b), n, out)
        return PyBytes_FromStringAndSize(<char*>out, n)
    finally:
        PyMem_Free(out)


# -- integers -------------------------------------------------------------------------------------

cdef inline Py_ssize_t _read_int(const uint8_t* p, Py_ssize_t end, Py_ssize_t* pos,
                                 int prefix_bits) except -1:
    """The integer whose prefix is at p[pos[0]]; advances pos[0] past it."""
    cdef Py_ssize_t i = pos[0]
    cdef uint64_t limit = (1 << prefix_bits) - 1
    cdef uint64_t value
    cdef uint8_t b
    cdef int shift = 0
    if i >= end:
        raise HPACKError("truncated header block")
    value = p[i] & limit
    i += 1
    if value < limit:
        pos[0] = i
        return <Py_ssize_t>value
    while True:
        if i >= end:
            raise HPACKError("truncated header block")
        b = p[i]
        i += 1
        value += (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            break
        shift += 7
        if shift >= CONTINUATION_SHIFT_LIMIT:
            raise HPACKError("integer overflow")
    if value > INTEGER_LIMIT:
        raise HPACKError("integer overflow")
    pos[0] = i
    return <Py_ssize_t>value


def encode_integer(value, int prefix_bits, int pattern=0):
    """value in an N-bit prefix (1 <= N <= 8); pattern holds the first byte's other bits."""
    if not 1 <= prefix_bits <= 8:
        raise ValueError("prefix_bits must be 1..8")
    cdef uint64_t limit = (1 << prefix_bits) - 1
    if not 0 <= pattern <= 0xFF or pattern & limit:
        raise ValueError("pattern overlaps the prefix")
    if not 0 <= value <= INTEGER_LIMIT:
        raise ValueError("integer out of range")
    cdef uint64_t v = value
    cdef uint8_t buf[8]
    cdef int n = 0
    if v < limit:
        buf[0] = <uint8_t>(pattern | v)
        return PyBytes_FromStringAndSize(<char*>buf, 1)
    buf[0] = <uint8_t>(pattern | limit)
    n = 1
    v -= limit
    while v >= 0x80:
        buf[n] = <uint8_t>((v & 0x7F) | 0x80)
        n += 1
        v >>= 7
    buf[n] = <uint8_t>v
    return PyBytes_FromStringAndSize(<char*>buf, n + 1)


def decode_integer(data, int prefix_bits):
    """(value, bytes consumed) of the N-bit-prefix integer at the start of data."""
    if not 1 <= prefix_bits <= 8:
        raise ValueError("prefix_bits must be 1..8")
    cdef bytes b = _as_bytes(data)
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t value = _read_int(<const uint8_t*>PyBytes_AS_STRING(b), len(b), &pos,
                                      prefix_bits)
    return value, pos


cdef inline Py_ssize_t _field_size(tuple field) noexcept:
    return (_bytes_size(PyTuple_GET_ITEM(field, 0)) + _bytes_size(PyTuple_GET_ITEM(field, 1))
            + ENTRY_OVERHEAD)


# -- decoder --------------------------------------------------------------------------------------

cdef class _DynamicTable:
    """What the decoder and the encoder share: the dynamic table and its size accounting."""
    cdef list _entries  # oldest first
    cdef Py_ssize_t _size
    cdef Py_ssize_t _capacity

    @property
    def table(self):
        """The dynamic table, newest entry (index 62) first."""
        return self._entries[::-1]

    @property
    def table_size(self):
        return self._size

    @property
    def table_capacity(self):
        return self._capacity


cdef class Decoder(_DynamicTable):
    """One connection's HPACK decoding context: the dynamic table the peer's encoder fills.

    ``max_table_size`` is our SETTINGS_HEADER_TABLE_SIZE: the table starts at that capacity and
    the peer may resize it up to it. Lower it when the peer acknowledges a smaller setting: the
    next header block must then begin with a size update no larger than the smallest value set.
    ``max_header_list_size`` bounds a block's header list, counted as RFC 9113 §6.5.2 does.
    """
    cdef Py_ssize_t _max_table_size
    cdef Py_ssize_t _required_update
    cdef public Py_ssize_t max_header_list_size
    cdef uint8_t* _scratch  # Huffman output
    cdef Py_ssize_t _scratch_size

    def __cinit__(self):
        self._scratch = NULL
        self._scratch_size = 0

    def __dealloc__(self):
        PyMem_Free(self._scratch)

    def __init__(self, Py_ssize_t max_table_size=4096, Py_ssize_t max_header_list_size=65536):
        if max_table_size < 0:
            raise ValueError("max_table_size must not be negative")
        self._entries = []
        self._size = 0
        self._capacity = max_table_size
        self._max_table_size = max_table_size
        self._required_update = -1
        self.max_header_list_size = max_header_list_size

    @property
    def max_table_size(self):
        return self._max_table_size

    @max_table_size.setter
    def max_table_size(self, Py_ssize_t value):
        if value < 0:
            raise ValueError("max_table_size must not be negative")
        self._max_table_size = value
        if value < self._capacity and (self._required_update < 0
                                       or value < self._required_update):
            self._required_update = value

    cdef inline tuple _field(self, Py_ssize_t index):
        cdef Py_ssize_t k, n
        if index <= STATIC_COUNT:
            if index == 0:
                raise HPACKError("header index 0")
            return <tuple>PyTuple_GET_ITEM(_STATIC, index)
        k = index - STATIC_COUNT
        n = PyList_GET_SIZE(self._entries)
        if k > n:
            raise HPACKError("header index %d out of range" % index)
        return <tuple>PyList_GET_ITEM(self._entries, n - k)

    cdef bytes _string(self, const uint8_t* p, Py_ssize_t end, Py_ssize_t* pos):
        cdef bint huffman
        cdef Py_ssize_t n, start, size
        cdef uint8_t* scratch
        if pos[0] >= end:
            raise HPACKError("truncated header block")
        huffman = p[pos[0]] & 0x80
        n = _read_int(p, end, pos, 7)
        start = pos[0]
        if n > end - start:
            raise HPACKError("truncated header block")
        pos[0] = start + n
        if not huffman:
            return PyBytes_FromStringAndSize(<const char*>p + start, n)
        if 2 * n + 1 > self._scratch_size:
            size = max(2 * n + 1, 256)
            scratch = <uint8_t*>PyMem_Realloc(self._scratch, size)
            if scratch == NULL:
                raise MemoryError()
            self._scratch = scratch
            self._scratch_size = size
        n = _huffman_read(p + start, n, self._scratch)
        return PyBytes_FromStringAndSize(<char*>self._scratch, n)

    cdef int _evict(self, Py_ssize_t room) except -1:
        cdef list entries = self._entries
        cdef Py_ssize_t k = 0, n = PyList_GET_SIZE(entries)
        while self._size + room > self._capacity and k < n:
            self._size -= _field_size(<tuple>PyList_GET_ITEM(entries, k))
            k += 1
        if k:
            del entries[:k]
        return 0

    cdef int _add(self, tuple field, Py_ssize_t size) except -1:
        if size > self._capacity:
            del self._entries[:]
            self._size = 0
            return 0
        self._evict(size)
        self._entries.append(field)
        self._size += size
        return 0

    def decode(self, data):
        """The header list of one complete header block."""
        cdef bytes buf = _as_bytes(data)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(buf)
        cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0, index, size, list_size = 0
        cdef Py_ssize_t limit = self.max_header_list_size
        cdef list out = []
        cdef tuple field
        cdef bytes name, value
        cdef uint8_t b
        cdef bint indexing
        while pos < end:
            b = p[pos]
            if b & 0x80:  # indexed field (§6.1)
                if self._required_update >= 0:
                    raise HPACKError("dynamic table size update required")
                index = _read_int(p, end, &pos, 7)
                field = self._field(index)
                list_size += _field_size(field)
                if list_size > limit:
                    raise HPACKError("header list larger than %d" % limit)
                out.append(field)
            elif (b & 0xE0) == 0x20:  # dynamic table size update (§6.3)
                if PyList_GET_SIZE(out):
                    raise HPACKError("dynamic table size update after a header field")
                size = _read_int(p, end, &pos, 5)
                if size > self._max_table_size or (0 <= self._required_update < size):
                    raise HPACKError("dynamic table size update above the limit")
                self._required_update = -1
                self._capacity = size
                self._evict(0)
            else:  # literal (§6.2): with incremental indexing, without, never indexed
                if self._required_update >= 0:
                    raise HPACKError("dynamic table size update required")
                indexing = b & 0x40
                index = _read_int(p, end, &pos, 6 if indexing else 4)
                if index:
                    field = self._field(index)
                    name = <bytes>PyTuple_GET_ITEM(field, 0)
                else:
                    name = self._string(p, end, &pos)
                value = self._string(p, end, &pos)
                size = PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + ENTRY_OVERHEAD
                list_size += size
                if list_size > limit:
                    raise HPACKError("header list larger than %d" % limit)
                field = (name, value)
                out.append(field)
                if indexing:
                    self._add(field, size)
        if self._required_update >= 0:
            raise HPACKError("dynamic table size update required")
        return out


# -- encoder --------------------------------------------------------------------------------------

cdef class Encoder(_DynamicTable):
    """One connection's HPACK encoding context, mirroring the peer decoder's dynamic table.

    Fields found whole in the static or dynamic table are sent as an index; others as literals
    (name by index where possible), added to the dynamic table unless their name is in
    ``never_index`` (sent "never indexed", §7.1.3) or ``no_index`` (values that change every
    time), or the entry would not fit. A string is Huffman-coded when that is not longer
    (ties go to Huffman, as in RFC 7541 C.4 and C.6) and ``huffman`` is true.

    ``max_table_size`` is the table's initial capacity (HTTP/2's initial setting is 4096).
    Whatever larger size the peer allows later, the table grows to ``table_size_limit`` at
    most, so a peer cannot make us keep every header we ever sent.
    """
    cdef Py_ssize_t _inserted  # entries ever added; entry number s has index 62 + inserted-1-s
    cdef dict _by_field  # (name, value) -> the newest entry's number
    cdef dict _by_name
    cdef Py_ssize_t _pending_min  # a size update to send first (-1: none)
    cdef Py_ssize_t _limit  # the largest capacity we take, whatever the peer allows
    cdef frozenset _never_index
    cdef frozenset _no_index
    cdef uint8_t* _buf  # the block being written
    cdef Py_ssize_t _buf_size
    cdef Py_ssize_t _len

    def __cinit__(self):
        self._buf = NULL
        self._buf_size = 0

    def __dealloc__(self):
        PyMem_Free(self._buf)

    def __init__(self, Py_ssize_t max_table_size=4096, *, Py_ssize_t table_size_limit=4096,
                 never_index=DEFAULT_NEVER_INDEX, no_index=DEFAULT_NO_INDEX):
        if max_table_size < 0 or table_size_limit < 0:
            raise ValueError("max_table_size must not be negative")
        self._limit = table_size_limit
        self._entries = []
        self._size = 0
        self._capacity = max_table_size
        self._inserted = 0
        self._by_field = {}
        self._by_name = {}
        self._pending_min = -1
        self._never_index = frozenset(never_index)
        self._no_index = frozenset(no_index)

    def set_max_table_size(self, Py_ssize_t n):
        """The peer's SETTINGS_HEADER_TABLE_SIZE: the table takes this capacity (at most
        table_size_limit) and the next block begins with a size update (preceded by the
        smallest size set meanwhile, §4.2)."""
        if n < 0:
            raise ValueError("max_table_size must not be negative")
        n = min(n, self._limit)
        if self._pending_min < 0 or n < self._pending_min:
            self._pending_min = n
        self._capacity = n
        self._evict(0)

    cdef int _evict(self, Py_ssize_t room) except -1:
        cdef list entries = self._entries
        cdef Py_ssize_t k = 0, n = PyList_GET_SIZE(entries)
        cdef Py_ssize_t first = self._inserted - n
        cdef tuple field
        while self._size + room > self._capacity and k < n:
            field = <tuple>PyList_GET_ITEM(entries, k)
            self._size -= _field_size(field)
            if self._by_field.get(field) == first + k:
                del self._by_field[field]
            if self._by_name.get(field[0]) == first + k:
                del self._by_name[field[0]]
            k += 1
        if k:
            del entries[:k]
        return 0

    cdef inline int _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t size
        cdef uint8_t* buf
        if self._len + n > self._buf_size:
            size = max(2 * self._buf_size, self._len + n, 512)
            buf = <uint8_t*>PyMem_Realloc(self._buf, size)
            if buf == NULL:
                raise MemoryError()
            self._buf = buf
            self._buf_size = size
        return 0

    cdef inline int _put_int(self, uint64_t value, int prefix_bits, uint8_t pattern) except -1:
        cdef uint64_t limit = (1 << prefix_bits) - 1
        cdef uint8_t* out
        self._reserve(11)
        out = self._buf + self._len
        if value < limit:
            out[0] = <uint8_t>(pattern | value)
            self._len += 1
            return 0
        out[0] = <uint8_t>(pattern | limit)
        value -= limit
        self._len += 1
        while value >= 0x80:
            self._buf[self._len] = <uint8_t>((value & 0x7F) | 0x80)
            self._len += 1
            value >>= 7
        self._buf[self._len] = <uint8_t>value
        self._len += 1
        return 0

    cdef int _put_string(self, bytes s, bint huffman) except -1:
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(s)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(s), hn
        if huffman and n:
            hn = (_huffman_bits(p, n) + 7) >> 3
            if hn <= n:
                self._put_int(hn, 7, 0x80)
                self._reserve(hn)
                _huffman_write(p, n, self._buf + self._len)
                self._len += hn
                return 0
        self._put_int(n, 7, 0)
        self._reserve(n)
        memcpy(self._buf + self._len, p, n)
        self._len += n
        return 0

    def encode(self, headers, bint huffman=True):
        """One header block for headers, an iterable of (name, value) bytes pairs."""
        cdef object name, value, found
        cdef Py_ssize_t index, size
        cdef bint indexing
        self._len = 0
        if self._pending_min >= 0:
            if self._pending_min < self._capacity:
                self._put_int(self._pending_min, 5, 0x20)
            self._put_int(self._capacity, 5, 0x20)
            self._pending_min = -1
        for field in headers:
            name, value = field
            if type(name) is not bytes or type(value) is not bytes:
                raise TypeError("header names and values must be bytes")
            if type(field) is not tuple:
                field = (name, value)
            found = _STATIC_FIELD_INDEX.get(field)
            if found is None:
                found = self._by_field.get(field)
                if found is not None:
                    found = STATIC_COUNT + self._inserted - <Py_ssize_t>found
            if found is not None:
                self._put_int(<Py_ssize_t>found, 7, 0x80)
                continue
            found = _STATIC_NAME_INDEX.get(name)
            if found is None:
                found = self._by_name.get(name)
                index = 0 if found is None else STATIC_COUNT + self._inserted - <Py_ssize_t>found
            else:
                index = <Py_ssize_t>found
            size = PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + ENTRY_OVERHEAD
            if name in self._never_index:
                self._put_int(index, 4, 0x10)
                indexing = False
            elif name in self._no_index or size > self._capacity:
                self._put_int(index, 4, 0)
                indexing = False
            else:
                self._put_int(index, 6, 0x40)
                indexing = True
            if not index:
                self._put_string(<bytes>name, huffman)
            self._put_string(<bytes>value, huffman)
            if indexing:
                self._evict(size)
                self._entries.append(field)
                self._size += size
                self._by_field[field] = self._inserted
                self._by_name[name] = self._inserted
                self._inserted += 1
        return PyBytes_FromStringAndSize(<char*>self._buf, self._len)
