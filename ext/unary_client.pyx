# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of the client's path for unary calls: kvstore/client/unary.py's UnaryCall,
kvstore/client/receive.py's frame loop, and call.py's start_unary.

A unary response is three frames (HEADERS, DATA, HEADERS with the trailers), which the pure
path takes through some twenty-five Python calls. Here:

* ``UnaryCall`` is the stream handler of one unary call, as call.UnaryCall (the same
  ResponseHandler methods, outcomes and error messages), without the dicts: it looks up the few
  header fields it reads, the last one of a name winning as in a dict.
* ``receive(conn, frames)`` is the client connection's frame loop. The frames of the common case
  -- DATA without padding on an open stream whose window takes it, HEADERS with END_HEADERS and
  neither padding nor priority on an open stream -- it handles itself, as the connection core's
  _frame would (HPACK always decoded: the table is the connection's); anything else, and every
  error, it hands to ``conn._frame``, the reference. A UnaryCall's methods are called directly.

* ``start_unary(conn, block, message, callback)`` opens the call's stream and writes its
  HEADERS and DATA as one piece when they fit the windows and a frame each, as
  H2ClientConnection.open_request does; anything else goes to ``conn.open_request``.

tests/test_unary_client.py feeds the same frames to the compiled, the pure and the connection
core's own loop, and sends the same calls through both start_unary, and compares what they do.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport PyObject
from libc.string cimport memcpy

from kvstore.h2 import frames as _f
from kvstore.h2.settings import ACK_THRESHOLD as _ACK_THRESHOLD
from kvstore.h2.stream import Stream as _Stream

cdef object StreamError = _f.StreamError
cdef object Stream = _Stream


cdef object _client(str name):
    """A module of kvstore.client, imported when first needed (the rarer cases): kvstore.client
    imports this module as it starts, so this one cannot import it as it starts."""
    import importlib
    return importlib.import_module("kvstore.client." + name)

cdef enum:
    DATA = 0
    HEADERS = 1
    END_STREAM = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY_FLAG = 0x20
    OK = 0
    INTERNAL = 13
    UNAVAILABLE = 14

cdef Py_ssize_t ACK_THRESHOLD = _ACK_THRESHOLD


cdef object _last(object headers, bytes name, object default):
    """The value of the last field named ``name`` (what dict(headers) would hold)."""
    cdef Py_ssize_t i
    cdef object pair
    if type(headers) is not list:
        headers = list(headers)
    i = PyList_GET_SIZE(headers) - 1
    while i >= 0:
        pair = <object>PyList_GET_ITEM(headers, i)
        if pair[0] == name:
            return pair[1]
        i -= 1
    return default


def _told(code, payload):
    pass


cdef class UnaryCall:
    """A unary call's response: one message, then OK. ``callback(code, payload)`` is told the
    outcome once: (0, the message's bytes) or (a gRPC code, its message)."""

    cdef object _callback
    cdef object _response  # the last message received
    cdef Py_ssize_t _count  # messages received
    cdef bint _head_seen
    cdef object _status  # the header list holding grpc-status, once it came
    cdef object _reader  # a MessageReader, once a message did not come whole in one frame
    cdef readonly bint ended  # the outcome is known (and told)

    def __init__(self, callback):
        self._init(callback)

    cdef _init(self, callback):
        self._callback = callback
        self._response = b""
        self._count = 0
        self._head_seen = False
        self._status = None
        self._reader = None
        self.ended = False

    # -- kvstore.h2.client.ResponseHandler ----------------------------------------------------

    def headers(self, headers, bint end_stream):
        self._headers(headers, end_stream)

    def data(self, payload):
        self._data(payload)

    def end_of_stream(self):
        self._end_of_stream()

    def cancel(self):
        # RST_STREAM from the server, or the connection lost: nothing more will come
        self._fail(UNAVAILABLE, "the stream was reset or the connection lost")

    def fail(self, code, message):
        self._fail(code, message)

    # -- the same, for receive() ----------------------------------------------------------

    cdef int _headers(self, object headers, bint end_stream) except -1:
        cdef object http
        if self._head_seen:
            self._status = headers  # the trailers
            return 0
        self._head_seen = True
        http = _last(headers, b":status", b"")
        if http != b"200":
            # not a gRPC server's answer: the status is the HTTP one, as grpc maps it
            code = _client("status").code_of_http_status(int(http)) if http.isdigit() else INTERNAL
            self._fail(code, f"unexpected HTTP status {http.decode('latin-1')}")
        elif not _last(headers, b"content-type", b"").startswith(b"application/grpc"):
            self._fail(INTERNAL, "the response's content-type is not application/grpc")
        elif end_stream:
            self._status = headers  # a trailers-only response
        return 0

    cdef int _data(self, object payload) except -1:
        cdef const unsigned char* p
        cdef Py_ssize_t n, length
        if self.ended:
            return 0
        if self._reader is None:
            if type(payload) is bytes and PyBytes_GET_SIZE(payload) >= 5:
                # the common case, one whole message in one frame: as MessageReader.feed's
                n = PyBytes_GET_SIZE(payload)
                p = <const unsigned char*>PyBytes_AS_STRING(payload)
                length = ((<Py_ssize_t>p[1] << 24) | (<Py_ssize_t>p[2] << 16)
                          | (<Py_ssize_t>p[3] << 8) | p[4])
                if n == length + 5:
                    if p[0]:
                        self._fail(INTERNAL, "compressed message without a negotiated encoding")
                        return 0
                    self._count += 1
                    self._response = payload[5:]
                    return 0
            self._reader = _client("messages").MessageReader()
        try:
            messages = self._reader.feed(payload)
        except _client("messages").CompressedMessage:
            self._fail(INTERNAL, "compressed message without a negotiated encoding")
            return 0
        for message in messages:
            self._count += 1
            self._response = message
        return 0

    cdef int _end_of_stream(self) except -1:
        cdef object value
        cdef object code
        if self.ended:
            return 0
        status = self._status
        if status is None:
            self._fail(INTERNAL, "the stream ended without trailers")
            return 0
        value = _last(status, b"grpc-status", None)
        code = OK if value == b"0" else _client("status").parse_code(value)
        if code != OK:
            message = _last(status, b"grpc-message", b"")
            self._fail(code, _client("status").decode_message(message))
        elif self._reader is not None and self._reader.partial:
            self._fail(INTERNAL, "the stream ended inside a message")
        else:
            self.ended = True
            self._end(OK, "")
        return 0

    cdef int _fail(self, object code, object message) except -1:
        if not self.ended:
            self.ended = True
            self._end(code, message)
        return 0

    cdef int _end(self, object code, object message) except -1:
        callback, self._callback = self._callback, _told  # the handler may outlive the call
        if code != OK:
            callback(code, message)
        elif self._count == 1:
            callback(OK, self._response)
        else:
            # a unary call has one response message: grpc-go's errors for none or more
            callback(INTERNAL, "no response message" if not self._count
                     else "more than one response message for a unary call")
        return 0


# -- the connection's frame loop ----------------------------------------------------------------

cdef inline int _handler_headers(object handler, object headers, bint end_stream) except -1:
    if type(handler) is UnaryCall:
        return (<UnaryCall>handler)._headers(headers, end_stream)
    handler.headers(headers, end_stream)
    return 0


cdef inline int _handler_end(object handler) except -1:
    if type(handler) is UnaryCall:
        return (<UnaryCall>handler)._end_of_stream()
    handler.end_of_stream()
    return 0


cdef int _remote_ended(object conn, dict streams, object stream, object handler) except -1:
    """H2Connection._remote_ended, and _forget inline in its usual case."""
    stream.remote_closed = True
    _handler_end(handler)
    if stream.closed:
        if stream.drained is None and not conn._going_away:
            stream.handler = None  # handler and stream refer to each other: no cycle for the GC
            if streams.pop(stream.id, None) is not None:
                blocked = conn._blocked
                if blocked:
                    blocked.pop(stream.id, None)
        else:
            conn._forget(stream)
    return 0


cdef bint _fast_frame(object conn, dict streams, int ftype, int flags, object sid,
                      object payload) except -1:
    """Handles the frame if it is of the common case; False if it is not (nothing done)."""
    cdef PyObject* found
    cdef Py_ssize_t size
    cdef bint end_stream
    if ftype == DATA:
        if flags & PADDED:
            return False
        found = PyDict_GetItem(streams, sid)
        if found is NULL:
            return False
        stream = <object>found
        size = len(payload)
        if stream.remote_closed or stream.recv_window < size:
            return False
        conn._conn_recv_unacked += size  # flow control counts the whole frame
        stream.recv_window -= size
        stream.recv_unacked += size
        handler = stream.handler  # the stream lets go of it if this data ends the call
        if size:
            if type(handler) is UnaryCall:
                (<UnaryCall>handler)._data(payload)
            else:
                handler.data(payload)
        if flags & END_STREAM:
            _remote_ended(conn, streams, stream, handler)
        return True
    if ftype == HEADERS:
        if (flags & (END_HEADERS | PADDED | PRIORITY_FLAG)) != END_HEADERS or not (sid & 1):
            return False
        found = PyDict_GetItem(streams, sid)
        if found is NULL:
            return False
        stream = <object>found
        if stream.remote_closed:
            return False
        headers = conn._decoder.decode(payload)  # always decoded: the HPACK state is shared
        end_stream = flags & END_STREAM
        handler = stream.handler
        _handler_headers(handler, headers, end_stream)
        if end_stream and PyDict_GetItem(streams, sid) == <PyObject*>stream:  # not reset
            _remote_ended(conn, streams, stream, handler)
        return True
    return False


def receive(conn, list frames):
    """The frames in order, as H2Connection.data_received's loop takes them; returns whether
    the connection closed on the way (the rest of the frames then ignored)."""
    cdef dict streams = conn.streams
    cdef int ftype, flags
    for ftype, flags, sid, payload in frames:
        try:
            if conn._headers_sid or not _fast_frame(conn, streams, ftype, flags, sid, payload):
                conn._frame(ftype, flags, sid, payload)
        except StreamError as e:
            conn._reset(e.stream_id, e.code)
        if conn._closed:
            return True
    return False


def window_updates_due(conn):
    """Whether H2Connection._send_window_updates would send anything now."""
    if conn._conn_recv_unacked >= ACK_THRESHOLD:
        return True
    for stream in (<dict>conn.streams).values():
        if stream.recv_unacked >= ACK_THRESHOLD and not stream.remote_closed:
            return True
    return False


# -- sending ------------------------------------------------------------------------------------

include "frame_header.pxi"


cdef object _prefix(Py_ssize_t n):
    """The gRPC prefix of an uncompressed message of ``n`` bytes."""
    cdef unsigned char p[5]
    p[0] = 0
    p[1] = (n >> 24) & 0xFF
    p[2] = (n >> 16) & 0xFF
    p[3] = (n >> 8) & 0xFF
    p[4] = n & 0xFF
    return PyBytes_FromStringAndSize(<char*>p, 5)


cdef object _open_request(object conn, object block, UnaryCall call, object message):
    """H2ClientConnection.open_request(block, call, prefix, message), its usual case here."""
    cdef Py_ssize_t blen, mlen, n, limit, window, sid
    cdef unsigned char* p
    if (type(block) is not bytes or type(message) is not bytes or conn._closed
            or conn._going_away or conn._table_size_update_due):
        return conn.open_request(block, call, _prefix(len(message)), message)
    blen = PyBytes_GET_SIZE(block)
    mlen = PyBytes_GET_SIZE(message)
    n = mlen + 5
    window = conn._peer_initial_window  # a new stream's send window
    limit = conn.peer_max_frame
    sid = conn._next_stream_id
    if (n > window or n > limit or blen > limit or sid > 0x7FFFFFFF
            or n > conn._conn_send_window):
        return conn.open_request(block, call, _prefix(mlen), message)
    conn._next_stream_id = sid + 2
    stream = Stream(sid, window)
    stream.handler = call
    conn.streams[sid] = stream
    conn._conn_send_window -= n
    stream.send_window = window - n
    conn._sent_since_ping = True
    # HEADERS (END_HEADERS), then DATA (END_STREAM): the prefix, then the message
    data = PyBytes_FromStringAndSize(NULL, 9 + blen + 9 + n)
    p = <unsigned char*>PyBytes_AS_STRING(data)
    _put_frame_header(p, blen, HEADERS, END_HEADERS, sid)
    memcpy(p + 9, PyBytes_AS_STRING(block), blen)
    p += 9 + blen
    _put_frame_header(p, n, DATA, END_STREAM, sid)
    p[9] = 0
    p[10] = (mlen >> 24) & 0xFF
    p[11] = (mlen >> 16) & 0xFF
    p[12] = (mlen >> 8) & 0xFF
    p[13] = mlen & 0xFF
    memcpy(p + 14, PyBytes_AS_STRING(message), mlen)
    out = conn._out  # H2Connection._write
    if not out:
        conn.loop.call_soon(conn._flush)
    out.append(data)
    # H2Connection._close_local, a client's: half-closed (local) until the response ends
    stream.closed = True
    blocked = conn._blocked
    if blocked:
        blocked.pop(sid, None)
    return stream


def start_unary(conn, block, message, callback):
    """Sends one request (its header block encoded for open_stream_encoded) on a new stream;
    returns the stream. The callback is never called before this returns; if the connection
    cannot take the call, it is called soon with UNAVAILABLE, and None returned."""
    cdef UnaryCall call = UnaryCall.__new__(UnaryCall)
    call._init(callback)
    try:
        return _open_request(conn, block, call, message)
    except ConnectionError as e:
        conn.loop.call_soon(call.fail, UNAVAILABLE, str(e))
        return None
