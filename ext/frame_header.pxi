# An HTTP/2 frame's 9-byte header (RFC 9113 §4.1), written in place: included by the modules
# that build frames (h2frames.pyx, unary_client.pyx).


cdef inline unsigned char* _put_frame_header(unsigned char* p, Py_ssize_t length, int ftype,
                                             int flags, unsigned long stream_id) noexcept:
    """Writes the header at p (24-bit length, type, flags, 31-bit stream id); returns p + 9."""
    p[0] = (length >> 16) & 0xFF
    p[1] = (length >> 8) & 0xFF
    p[2] = length & 0xFF
    p[3] = ftype
    p[4] = flags
    p[5] = (stream_id >> 24) & 0x7F
    p[6] = (stream_id >> 16) & 0xFF
    p[7] = (stream_id >> 8) & 0xFF
    p[8] = stream_id & 0xFF
    return p + 9
