# Protobuf wire encoding of KeyValues and the responses made of them (included by
# mvcc_core.pyx, which owns KeyValue). Twin: kvstore/mvcc/wire.py, whose docstring says why.

from libc.stdint cimport uint64_t


cdef inline Py_ssize_t _varint_size(uint64_t n) noexcept:
    cdef Py_ssize_t size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


cdef inline char* _put_varint(char* p, uint64_t n) noexcept:
    while n >= 0x80:
        p[0] = <char>((n & 0x7F) | 0x80)
        n >>= 7
        p += 1
    p[0] = <char>n
    return p + 1


cdef inline Py_ssize_t _int_field_size(long long n) noexcept:
    return 1 + _varint_size(<uint64_t>n) if n else 0


cdef inline char* _put_int_field(char* p, char tag, long long n) noexcept:
    if n:
        p[0] = tag
        p = _put_varint(p + 1, <uint64_t>n)
    return p


cdef inline Py_ssize_t _bytes_field_size(Py_ssize_t n) noexcept:
    return 1 + _varint_size(<uint64_t>n) + n if n else 0


cdef inline char* _put_bytes_field(char* p, char tag, const char* data, Py_ssize_t n) noexcept:
    if n:
        p[0] = tag
        p = _put_varint(p + 1, <uint64_t>n)
        memcpy(p, data, n)
        p += n
    return p


cdef inline char* _put_message_field(char* p, char tag, const char* data, Py_ssize_t n) noexcept:
    """A present sub-message: written even when empty (unlike a proto3 bytes field)."""
    p[0] = tag
    p = _put_varint(p + 1, <uint64_t>n)
    memcpy(p, data, n)
    return p + n


cdef inline uint64_t _get_varint(const unsigned char* p) noexcept:
    cdef uint64_t n = 0
    cdef int shift = 0
    while p[0] & 0x80:
        n |= (<uint64_t>(p[0] & 0x7F)) << shift
        shift += 7
        p += 1
    return n | ((<uint64_t>p[0]) << shift)


cdef int _encode_kv(KeyValue kv, const char* value, Py_ssize_t vlen) except -1:
    """Fills kv.encoded (kv's other fields are set) from a value given as a buffer."""
    cdef Py_ssize_t klen = len(kv.key)
    cdef Py_ssize_t head = (_bytes_field_size(klen) + _int_field_size(kv.create_revision)
                            + _int_field_size(kv.mod_revision) + _int_field_size(kv.version))
    cdef Py_ssize_t vfield = _bytes_field_size(vlen)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, head + vfield + _int_field_size(kv.lease))
    cdef char* p = PyBytes_AS_STRING(out)
    p = _put_bytes_field(p, 0x0A, PyBytes_AS_STRING(kv.key), klen)
    p = _put_int_field(p, 0x10, kv.create_revision)
    p = _put_int_field(p, 0x18, kv.mod_revision)
    p = _put_int_field(p, 0x20, kv.version)
    p = _put_bytes_field(p, 0x2A, value, vlen)
    _put_int_field(p, 0x30, kv.lease)
    kv.encoded = out
    return 0


cdef inline Py_ssize_t _value_start(KeyValue kv) noexcept:
    """Where the value field's tag is (or would be) in kv.encoded: after key and numbers."""
    return (_bytes_field_size(len(kv.key)) + _int_field_size(kv.create_revision)
            + _int_field_size(kv.mod_revision) + _int_field_size(kv.version))


cdef inline Py_ssize_t _value_end(KeyValue kv) noexcept:
    """Where the value field ends: only the lease follows it."""
    return len(kv.encoded) - _int_field_size(kv.lease)


cdef KeyValue _new_kv(bytes key, long long create_revision, long long mod_revision,
                      long long version, const char* value, Py_ssize_t vlen, long long lease):
    cdef KeyValue kv = KeyValue.__new__(KeyValue)
    kv.key = key
    kv.create_revision = create_revision
    kv.mod_revision = mod_revision
    kv.version = version
    kv.lease = lease
    _encode_kv(kv, value, vlen)
    return kv


cdef inline Py_ssize_t _kv_size(KeyValue kv, bint keys_only) noexcept:
    if keys_only:
        return len(kv.encoded) - (_value_end(kv) - _value_start(kv))
    return len(kv.encoded)


cdef inline char* _put_kv(char* p, KeyValue kv, bint keys_only) noexcept:
    cdef const char* e = PyBytes_AS_STRING(kv.encoded)
    cdef Py_ssize_t n = len(kv.encoded)
    if not keys_only:
        memcpy(p, e, n)
        return p + n
    cdef Py_ssize_t start = _value_start(kv), end = _value_end(kv)
    memcpy(p, e, start)
    p += start
    memcpy(p, e + end, n - end)
    return p + (n - end)


def kv_bytes(KeyValue kv, bint keys_only):
    if not keys_only:
        return kv.encoded
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _kv_size(kv, True))
    _put_kv(PyBytes_AS_STRING(out), kv, True)
    return out


def encode_kv(bytes key, long long create_revision, long long mod_revision, long long version,
              bytes value, long long lease):
    cdef KeyValue kv = _new_kv(key, create_revision, mod_revision, version,
                               PyBytes_AS_STRING(value), len(value), lease)
    return kv.encoded, _value_start(kv), _value_end(kv)


def encode_header(unsigned long long cluster_id, unsigned long long member_id,
                  long long revision, unsigned long long raft_term):
    cdef Py_ssize_t size = (_int_field_size(<long long>cluster_id)
                            + _int_field_size(<long long>member_id)
                            + _int_field_size(revision) + _int_field_size(<long long>raft_term))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    p = _put_int_field(p, 0x08, <long long>cluster_id)
    p = _put_int_field(p, 0x10, <long long>member_id)
    p = _put_int_field(p, 0x18, revision)
    _put_int_field(p, 0x20, <long long>raft_term)
    return out


def range_response(header, list kvs, bint keys_only, bint more, long long count):
    cdef Py_ssize_t size = 0, n
    cdef KeyValue kv
    cdef bytes h
    if header is not None:
        h = header
        size += 1 + _varint_size(len(h)) + len(h)
    for kv in kvs:
        n = _kv_size(kv, keys_only)
        size += 1 + _varint_size(n) + n
    if more:
        size += 2
    size += _int_field_size(count)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    if header is not None:
        p = _put_message_field(p, 0x0A, PyBytes_AS_STRING(h), len(h))
    for kv in kvs:
        p[0] = 0x12
        p = _put_varint(p + 1, _kv_size(kv, keys_only))
        p = _put_kv(p, kv, keys_only)
    if more:
        p[0] = 0x18
        p[1] = 0x01
        p += 2
    _put_int_field(p, 0x20, count)
    return out


def range_stream_response(bytes range_response_bytes):
    cdef Py_ssize_t n = len(range_response_bytes)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 1 + _varint_size(n) + n)
    cdef char* p = PyBytes_AS_STRING(out)
    _put_message_field(p, 0x0A, PyBytes_AS_STRING(range_response_bytes), n)
    return out


# -- watch -------------------------------------------------------------------------------------

def event(KeyValue kv, prev):
    cdef Py_ssize_t n = len(kv.encoded), pn = 0
    cdef Py_ssize_t size = (2 if kv.version == 0 else 0) + 1 + _varint_size(n) + n
    cdef KeyValue p_kv = None
    if prev is not None:
        p_kv = prev
        pn = len(p_kv.encoded)
        size += 1 + _varint_size(pn) + pn
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    if kv.version == 0:
        p[0] = 0x08
        p[1] = 0x01
        p += 2
    p = _put_message_field(p, 0x12, PyBytes_AS_STRING(kv.encoded), n)
    if p_kv is not None:
        p = _put_message_field(p, 0x1A, PyBytes_AS_STRING(p_kv.encoded), pn)
    return out


cdef inline Py_ssize_t _len_field_size(Py_ssize_t n) noexcept:
    return 1 + _varint_size(<uint64_t>n) + n


def event_field_size(bytes ev):
    return _len_field_size(len(ev))


def watch_response_size(bytes header, long long watch_id, list events, bint fragment):
    cdef Py_ssize_t size = _len_field_size(len(header)) + _int_field_size(watch_id)
    cdef bytes ev
    if fragment:
        size += 2
    for ev in events:
        size += _len_field_size(len(ev))
    return size


def watch_response(bytes header, long long watch_id, list events, bint fragment):
    cdef bytes out = PyBytes_FromStringAndSize(
        NULL, watch_response_size(header, watch_id, events, fragment))
    cdef char* p = PyBytes_AS_STRING(out)
    cdef bytes ev
    p = _put_message_field(p, 0x0A, PyBytes_AS_STRING(header), len(header))
    p = _put_int_field(p, 0x10, watch_id)
    if fragment:
        p[0] = 0x38
        p[1] = 0x01
        p += 2
    for ev in events:
        p = _put_message_field(p, 0x5A, PyBytes_AS_STRING(ev), len(ev))
    return out


# -- writes and txns ---------------------------------------------------------------------------

OP_RANGE, OP_PUT, OP_DELETE_RANGE, OP_TXN = 0x0A, 0x12, 0x1A, 0x22


def put_response(bytes header, prev_kv):
    cdef Py_ssize_t size = _len_field_size(len(header))
    cdef KeyValue prev = None
    if prev_kv is not None:
        prev = prev_kv
        size += _len_field_size(len(prev.encoded))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = _put_message_field(PyBytes_AS_STRING(out), 0x0A, PyBytes_AS_STRING(header),
                                      len(header))
    if prev is not None:
        _put_message_field(p, 0x12, PyBytes_AS_STRING(prev.encoded), len(prev.encoded))
    return out


def lease_keepalive_response(bytes header, long long lease_id, long long ttl):
    """A LeaseKeepAliveResponse: the keep-alive stream's answer, built without protobuf."""
    cdef Py_ssize_t size = (_len_field_size(len(header)) + _int_field_size(lease_id)
                            + _int_field_size(ttl))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = _put_message_field(PyBytes_AS_STRING(out), 0x0A, PyBytes_AS_STRING(header),
                                      len(header))
    p = _put_int_field(p, 0x10, lease_id)
    _put_int_field(p, 0x18, ttl)
    return out


def delete_range_response(bytes header, long long deleted, list prev_kvs):
    cdef Py_ssize_t size = _len_field_size(len(header)) + _int_field_size(deleted)
    cdef KeyValue kv
    for kv in prev_kvs:
        size += _len_field_size(len(kv.encoded))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = _put_message_field(PyBytes_AS_STRING(out), 0x0A, PyBytes_AS_STRING(header),
                                      len(header))
    p = _put_int_field(p, 0x10, deleted)
    for kv in prev_kvs:
        p = _put_message_field(p, 0x1A, PyBytes_AS_STRING(kv.encoded), len(kv.encoded))
    return out


def txn_response(bytes header, bint succeeded, list ops):
    cdef Py_ssize_t size = _len_field_size(len(header)) + (2 if succeeded else 0)
    cdef tuple op
    cdef bytes body
    for op in ops:
        body = op[1]
        size += _len_field_size(_len_field_size(len(body)))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = _put_message_field(PyBytes_AS_STRING(out), 0x0A, PyBytes_AS_STRING(header),
                                      len(header))
    if succeeded:
        p[0] = 0x10
        p[1] = 0x01
        p += 2
    for op in ops:
        body = op[1]
        p[0] = 0x1A
        p = _put_varint(p + 1, _len_field_size(len(body)))
        p = _put_message_field(p, <char>(<int>op[0]), PyBytes_AS_STRING(body), len(body))
    return out
