"""HTTP/2 frame reader (RFC 9113 §4.1): splits a received byte stream into frames.

Pure-Python reference; ext/h2frames.pyx is its compiled twin with the same API, results and
errors (tests/test_frame_reader.py checks both and compares them on random streams). Pick one
through frame_reader_select.

    reader = FrameReader(max_frame_size)
    frames, error = reader.feed(data)   # [(type, flags, stream_id, payload), ...], FrameError | None

The reader only frames: it checks nothing but the length limit, and hands out every frame type
(known or not) with the reserved bit of the stream id cleared. A frame whose header announces a
length above ``max_frame_size`` is a FRAME_SIZE_ERROR as soon as its 9-byte header has arrived;
the frames before it are still returned, and the reader is dead from then on.
"""
from __future__ import annotations

import operator
import struct

from .frames import FRAME_SIZE_ERROR, ConnectionError_

HEADER_SIZE = 9
_HEADER = struct.Struct(">HBBBL")  # length (24 bits as H+B), type, flags, stream id


class FrameError(ConnectionError_):
    """A framing error: ``code`` is the HTTP/2 error code (FRAME_SIZE_ERROR for now).

    A connection error (frames.ConnectionError_), so answering it is GOAWAY(code) and close.
    The compiled reader returns this same class.
    """

    def __init__(self, code: int, message: str):
        super().__init__(code, message)


def _check_max(value) -> int:
    value = operator.index(value)
    if value < 0:
        raise ValueError("max_frame_size must not be negative")
    return value


def _too_large(ftype: int, sid: int, length: int, limit: int) -> FrameError:
    return FrameError(FRAME_SIZE_ERROR,
                      f"frame of type {ftype} on stream {sid} has {length} bytes,"
                      f" more than SETTINGS_MAX_FRAME_SIZE {limit}")


class FrameReader:
    """Frames from a byte stream fed in arbitrary pieces."""

    __slots__ = ("_buf", "_max", "_error")

    def __init__(self, max_frame_size: int):
        self._buf = bytearray()
        self._max = _check_max(max_frame_size)
        self._error: FrameError | None = None

    @property
    def max_frame_size(self) -> int:
        """The largest payload accepted; settable (applies to frames not yet returned)."""
        return self._max

    @max_frame_size.setter
    def max_frame_size(self, value: int) -> None:
        self._max = _check_max(value)

    def buffered(self) -> int:
        """Bytes held for an incomplete frame (0 once the reader has failed)."""
        return len(self._buf)

    def feed(self, data) -> tuple[list[tuple[int, int, int, bytes]], FrameError | None]:
        """Appends data (any bytes-like object) and returns (complete frames in order, error).

        error is None or the FrameError that stopped the reader; after it every feed returns
        ([], that same error) and ignores its data.
        """
        if self._error is not None:
            return [], self._error
        buf = self._buf
        buf += data
        limit = self._max
        unpack = _HEADER.unpack_from
        frames: list[tuple[int, int, int, bytes]] = []
        n = len(buf)
        pos = 0
        while n - pos >= HEADER_SIZE:
            hi, lo, ftype, flags, sid = unpack(buf, pos)
            length = (hi << 8) | lo
            sid &= 0x7FFF_FFFF
            if length > limit:
                self._error = _too_large(ftype, sid, length, limit)
                buf.clear()
                return frames, self._error
            end = pos + HEADER_SIZE + length
            if end > n:
                break
            frames.append((ftype, flags, sid, bytes(buf[pos + HEADER_SIZE:end])))
            pos = end
        del buf[:pos]
        return frames, None


__all__ = ["FrameReader", "FrameError", "HEADER_SIZE"]
