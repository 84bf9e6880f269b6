"""HTTP/2 frames (RFC 9113 §4, §6): the frame header, types, flags, and frame builders.

Parsing is done by the connection straight from its receive buffer (a frame is a 9-byte
header and a payload); this module holds the constants and the encoders.
"""
from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings identifiers.
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

# Error codes (§7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
CONNECT_ERROR = 0xA
ENHANCE_YOUR_CALM = 0xB
INADEQUATE_SECURITY = 0xC
HTTP_1_1_REQUIRED = 0xD

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_WINDOW = 2**31 - 1
MAX_FRAME_LIMIT = 2**24 - 1

_HEADER = struct.Struct(">HBBBL")  # length (24 bits as H+B), type, flags, stream id
_GRPC_PREFIX = struct.Struct(">BL")  # a gRPC message's: compressed flag, length
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")


class ConnectionError_(Exception):  # noqa: N801 - the trailing _ keeps it apart from the builtin
    """A connection error (§5.4.1): answer GOAWAY with ``code`` and close."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class StreamError(Exception):
    """A stream error (§5.4.2): answer RST_STREAM with ``code``; the connection goes on."""

    def __init__(self, stream_id: int, code: int, message: str):
        super().__init__(message)
        self.stream_id = stream_id
        self.code = code


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEADER.pack(n >> 8, n & 0xFF, ftype, flags, stream_id) + payload


def frame_header(ftype: int, flags: int, stream_id: int, length: int) -> bytes:
    """A frame's 9-byte header alone: the payload is written after it, without a copy."""
    return _HEADER.pack(length >> 8, length & 0xFF, ftype, flags, stream_id)


def grpc_payload(messages: list) -> bytes:
    """Each message behind its gRPC length prefix (uncompressed), joined: a DATA payload."""
    return b"".join([part for m in messages for part in (_GRPC_PREFIX.pack(0, len(m)), m)])


def grpc_data_frames(stream_id: int, messages: list, size: int, max_frame: int) -> bytes:
    """The DATA frames (no flags, each at most ``max_frame`` long) of
    ``grpc_payload(messages)``, ``size`` being that payload's length: 5 bytes a message plus the
    messages. (Pure twin of ext/h2frames.pyx's: frame_reader_select picks one.)"""
    payload = grpc_payload(messages)
    if len(payload) != size or not 1 <= max_frame <= 0xFFFFFF:
        raise ValueError(f"grpc_data_frames: the messages take {len(payload)} bytes, not {size} "
                         f"(frames of at most {max_frame})")
    return b"".join(frame_header(DATA, 0, stream_id, len(payload[i:i + max_frame]))
                    + payload[i:i + max_frame] for i in range(0, size, max_frame))


def response_frames(stream_id: int, head: bytes, prefix: bytes, body: bytes,
                    trailers: bytes) -> bytes:
    """A whole response in three frames: HEADERS ``head`` (END_HEADERS), DATA ``prefix +
    body``, HEADERS ``trailers`` (END_HEADERS, END_STREAM); each must fit one frame (the caller
    checks the peer's frame size). (Pure twin of ext/h2frames.pyx's: frame_reader_select picks
    one.)"""
    data = prefix + body
    if max(len(head), len(data), len(trailers)) > 0xFFFFFF:
        raise ValueError("response_frames: a frame past 24 bits of length")
    return (frame(HEADERS, END_HEADERS, stream_id, head) + frame(DATA, 0, stream_id, data)
            + frame(HEADERS, END_HEADERS | END_STREAM, stream_id, trailers))


def parse_header(buf, pos: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at buf[pos:pos+9]."""
    hi, lo, ftype, flags, sid = _HEADER.unpack_from(buf, pos)
    return (hi << 8) | lo, ftype, flags, sid & 0x7FFF_FFFF


def settings(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in values.items()))


SETTINGS_ACK = frame(SETTINGS, ACK, 0)


def parse_settings(payload) -> list[tuple[int, int]]:
    if len(payload) % 6:
        raise ConnectionError_(FRAME_SIZE_ERROR, "SETTINGS payload is not a multiple of 6")
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, _GOAWAY.pack(last_stream_id, code) + debug)


def ping_ack(payload) -> bytes:
    return frame(PING, ACK, 0, bytes(payload))


def unpack_u32(payload) -> int:
    return _U32.unpack_from(payload, 0)[0]
