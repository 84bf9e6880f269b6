# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True
"""Compiled twin of kvstore/h2/frame_reader.py (HTTP/2 framing, RFC 9113 §4.1).

Same class, results and errors (tests/test_frame_reader.py checks both and compares them on
random streams and chunkings). FrameError, the argument check and the error message come from
the pure module, so callers catch one class.

A feed is parsed straight from the caller's buffer: only an incomplete frame left at the end is
copied into the reader's C buffer. The next feed first completes that frame from the front of
its data (copying just the missing bytes), then goes back to parsing the data in place. Each
payload is copied once, into its bytes object.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

from kvstore.h2 import frame_reader as _py

FrameError = _py.FrameError
HEADER_SIZE = _py.HEADER_SIZE

cdef object _check_max = _py._check_max
cdef object _too_large = _py._too_large

cdef enum:
    HDR = 9
    MAX_LENGTH = 0xFFFFFF       # 24-bit length field
    MIN_ALLOC = 64
    KEEP_ALLOC = 65536          # buffers above this shrink once they hold less than half


include "frame_header.pxi"


cdef inline Py_ssize_t _length(const unsigned char* h) noexcept:
    return (<Py_ssize_t>h[0] << 16) | (<Py_ssize_t>h[1] << 8) | h[2]


cdef inline uint32_t _stream_id(const unsigned char* h) noexcept:
    return ((<uint32_t>(h[5] & 0x7F) << 24) | (<uint32_t>h[6] << 16)
            | (<uint32_t>h[7] << 8) | <uint32_t>h[8])


cdef class FrameReader:
    """Frames from a byte stream fed in arbitrary pieces."""

    cdef unsigned char* _buf    # an incomplete frame: _len bytes, header first
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _limit      # min(max_frame_size, MAX_LENGTH)
    cdef object _max
    cdef object _error

    def __cinit__(self, *args, **kwargs):
        self._buf = NULL
        self._len = 0
        self._cap = 0
        self._limit = 0

    def __dealloc__(self):
        PyMem_Free(self._buf)

    def __init__(self, max_frame_size):
        self.max_frame_size = max_frame_size
        self._error = None

    @property
    def max_frame_size(self):
        """The largest payload accepted; settable (applies to frames not yet returned)."""
        return self._max

    @max_frame_size.setter
    def max_frame_size(self, value):
        value = _check_max(value)
        self._limit = MAX_LENGTH if value > MAX_LENGTH else value
        self._max = value

    def buffered(self):
        """Bytes held for an incomplete frame (0 once the reader has failed)."""
        return self._len

    cdef int _reserve(self, Py_ssize_t size, Py_ssize_t frame) except -1:
        """Room for size held bytes of a frame of frame bytes (size <= frame). Grows by
        doubling, not past the frame (nor below MIN_ALLOC): a peer announcing a large frame
        costs memory only as its bytes arrive."""
        cdef Py_ssize_t cap
        cdef unsigned char* p
        if size <= self._cap:
            return 0
        cap = self._cap * 2
        if cap > frame:
            cap = frame
        if cap < MIN_ALLOC:
            cap = MIN_ALLOC
        if cap < size:
            cap = size
        p = <unsigned char*>PyMem_Realloc(self._buf, <size_t>cap)
        if p == NULL:
            raise MemoryError()
        self._buf = p
        self._cap = cap
        return 0

    cdef inline void _trim(self) noexcept:
        """Gives back a large buffer that now holds less than half of it (kept as is if
        realloc fails)."""
        cdef Py_ssize_t want
        cdef unsigned char* p
        if self._cap <= KEEP_ALLOC or self._len * 2 >= self._cap:
            return
        if self._len == 0:
            PyMem_Free(self._buf)
            self._buf = NULL
            self._cap = 0
            return
        want = self._len if self._len > KEEP_ALLOC else KEEP_ALLOC
        p = <unsigned char*>PyMem_Realloc(self._buf, <size_t>want)
        if p != NULL:
            self._buf = p
            self._cap = want

    cdef object _fail(self, const unsigned char* h):
        self._error = _too_large(h[3], _stream_id(h), _length(h), self._max)
        self._len = 0
        self._trim()
        return self._error

    def feed(self, data):
        """Appends data (any bytes-like object) and returns (complete frames in order, error).

        error is None or the FrameError that stopped the reader; after it every feed returns
        ([], that same error) and ignores its data.
        """
        cdef Py_buffer view
        cdef const unsigned char* p
        cdef const unsigned char* h
        cdef Py_ssize_t n, pos = 0, length, take, held
        cdef Py_ssize_t limit = self._limit
        cdef list frames
        cdef bytes payload
        cdef char* q
        if self._error is not None:
            return [], self._error
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const unsigned char*>view.buf
            n = view.len
            frames = []
            held = self._len
            if held:
                # complete the held frame from the front of data
                if held < HDR:
                    take = HDR - held
                    if take > n:
                        take = n
                    self._reserve(held + take, HDR)
                    memcpy(self._buf + held, p, <size_t>take)
                    pos = take
                    held += take
                    self._len = held
                    if held < HDR:
                        return frames, None
                h = self._buf
                length = _length(h)
                if length > limit:
                    return frames, self._fail(h)
                take = HDR + length - held
                if take > n - pos:
                    self._reserve(held + (n - pos), HDR + length)
                    memcpy(self._buf + held, p + pos, <size_t>(n - pos))
                    self._len = held + (n - pos)
                    return frames, None
                payload = PyBytes_FromStringAndSize(NULL, length)
                q = PyBytes_AS_STRING(payload)
                memcpy(q, h + HDR, <size_t>(held - HDR))
                memcpy(q + (held - HDR), p + pos, <size_t>take)
                frames.append((h[3], h[4], _stream_id(h), payload))
                pos += take
                self._len = 0
            while n - pos >= HDR:
                h = p + pos
                length = _length(h)
                if length > limit:
                    return frames, self._fail(h)
                if n - pos - HDR < length:
                    break
                frames.append((h[3], h[4], _stream_id(h),
                               PyBytes_FromStringAndSize(<const char*>h + HDR, length)))
                pos += HDR + length
            if pos < n:
                # keep the incomplete tail (the buffer is empty here)
                take = n - pos
                self._reserve(take, HDR + _length(p + pos) if take >= HDR else HDR)
                memcpy(self._buf, p + pos, <size_t>take)
                self._len = take
            self._trim()
            return frames, None
        finally:
            PyBuffer_Release(&view)


__all__ = ["FrameReader", "FrameError", "HEADER_SIZE", "grpc_data_frames", "response_frames"]


def grpc_data_frames(uint32_t stream_id, messages, Py_ssize_t size, Py_ssize_t max_frame):
    """Twin of kvstore/h2/frames.py's: the DATA frames (no flags, each at most ``max_frame``
    long) whose payloads, joined, are each message behind its gRPC length prefix; ``size`` is
    that payload's length. ``messages`` is a list or a subclass of one (a ResponseBatch)."""
    cdef Py_ssize_t total = 0, n, left = 0, remaining = size, nframes
    cdef bytes m
    cdef unsigned char prefix[5]
    for m in messages:
        total += 5 + len(m)
    if total != size or max_frame < 1 or max_frame > MAX_LENGTH:
        raise ValueError(f"grpc_data_frames: the messages take {total} bytes, not {size} "
                         f"(frames of at most {max_frame})")
    nframes = (size + max_frame - 1) // max_frame
    cdef bytes out = PyBytes_FromStringAndSize(NULL, HDR * nframes + size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    for m in messages:
        n = len(m)
        prefix[0] = 0
        prefix[1] = (n >> 24) & 0xFF
        prefix[2] = (n >> 16) & 0xFF
        prefix[3] = (n >> 8) & 0xFF
        prefix[4] = n & 0xFF
        p = _put_payload(p, prefix, 5, &left, &remaining, max_frame, stream_id)
        p = _put_payload(p, <const unsigned char*>PyBytes_AS_STRING(m), n, &left, &remaining,
                         max_frame, stream_id)
    return out


cdef unsigned char* _put_payload(unsigned char* p, const unsigned char* src, Py_ssize_t k,
                                 Py_ssize_t* left, Py_ssize_t* remaining, Py_ssize_t max_frame,
                                 uint32_t stream_id) noexcept:
    """Copies k payload bytes, starting a frame (its header) wherever the last one is full."""
    cdef Py_ssize_t c
    while k > 0:
        if left[0] == 0:
            left[0] = max_frame if remaining[0] > max_frame else remaining[0]
            p = _put_frame_header(p, left[0], 0x0, 0x0, stream_id)  # DATA, no flags
        c = k if k < left[0] else left[0]
        memcpy(p, src, c)
        p += c
        src += c
        k -= c
        left[0] -= c
        remaining[0] -= c
    return p


def response_frames(uint32_t stream_id, bytes head, bytes prefix, bytes body, bytes trailers):
    """Twin of kvstore/h2/frames.py's: a whole response in three frames, HEADERS ``head``
    (END_HEADERS), DATA ``prefix + body``, HEADERS ``trailers`` (END_HEADERS, END_STREAM);
    each must fit one frame (the caller checks the peer's frame size)."""
    cdef Py_ssize_t hn = len(head), pn = len(prefix), bn = len(body), tn = len(trailers)
    if hn > MAX_LENGTH or pn + bn > MAX_LENGTH or tn > MAX_LENGTH:
        raise ValueError("response_frames: a frame past 24 bits of length")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 3 * HDR + hn + pn + bn + tn)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    p = _put_frame_header(p, hn, 0x1, 0x4, stream_id)  # HEADERS, END_HEADERS
    memcpy(p, PyBytes_AS_STRING(head), hn)
    p += hn
    p = _put_frame_header(p, pn + bn, 0x0, 0x0, stream_id)  # DATA
    memcpy(p, PyBytes_AS_STRING(prefix), pn)
    memcpy(p + pn, PyBytes_AS_STRING(body), bn)
    p += pn + bn
    p = _put_frame_header(p, tn, 0x1, 0x5, stream_id)  # HEADERS, END_HEADERS | END_STREAM
    memcpy(p, PyBytes_AS_STRING(trailers), tn)
    return out
