"""Fuzz target: the HTTP/2 frame reader, compiled (ext/h2frames.pyx) against its pure twin
(kvstore/h2/frame_reader.py).

Input: [first max_frame_size][change][buffer type][chunking seed: 2 bytes] stream.
Both readers get the stream in the same pieces, as the same buffer type (the compiled one
reads any bytes-like object in place), with the same max_frame_size change before one feed
(``change`` bit 7: before feed ``change & 7``). feed() never raises: it returns the frames and
a FrameError (FRAME_SIZE_ERROR) that stops the reader. Required: the same frames, errors and
buffered() counts feed by feed; and, with no change, the same frames and error whatever the
chunking (the stream fed whole).
"""
from __future__ import annotations

import struct

import kvstore._ext.h2frames as compiled
from kvstore.h2 import frame_reader as pure, frames as f
from kvstore.h2.settings import OUR_MAX_FRAME

from .harness import Params, agree, chunk_sizes, expect, outcome

NAME = "h2_frames"
MAX_FRAME_SIZES = (f.DEFAULT_MAX_FRAME, OUR_MAX_FRAME, 0, 1, 8, 9, 100, 16383,
                   f.MAX_FRAME_LIMIT, 2**24, 2**31, 2**63)
BUFFERS = (bytes, bytearray, memoryview)


def _describe(error) -> tuple | None:
    if error is None:
        return None
    return (type(error).__name__, error.code, str(error))


def _feeds(impl, first: int, change: int, buffer, stream: bytes, sizes: list[int]) -> list:
    reader = impl.FrameReader(first)
    out = []
    pos = 0
    for k, size in enumerate(sizes):
        if change & 0x80 and k == change & 7:
            reader.max_frame_size = MAX_FRAME_SIZES[(change >> 3) % len(MAX_FRAME_SIZES)]
        piece = buffer(stream[pos:pos + size])
        pos += size
        frames, error = reader.feed(piece)
        expect(error is None or isinstance(error, pure.FrameError),
               f"{impl.__name__}: feed returned a {type(error).__name__}")
        out.append((frames, _describe(error), reader.buffered()))
    return out


def check(data: bytes) -> None:
    p = Params(data)
    first = p.pick(MAX_FRAME_SIZES)
    change = p.byte()
    buffer = p.pick(BUFFERS)
    seed = p.u16()
    stream = p.rest()
    sizes = chunk_sizes(len(stream), seed)
    results = [outcome(impl.__name__, _feeds, impl, first, change, buffer, stream, sizes)
               for impl in (compiled, pure)]
    agree(results[0], results[1], "frames, errors and buffered() per feed")
    if not change & 0x80:
        whole = outcome("pure, whole", _feeds, pure, first, 0, bytes, stream, [len(stream)])
        chunked = results[1][1]
        frames = [fr for feed in chunked for fr in feed[0]]
        error = next((feed[1] for feed in chunked if feed[1] is not None), None)
        expect((frames, error) == (whole[1][0][0], whole[1][0][1]),
               "the frames depend on how the stream was cut")
        for ftype, flags, sid, payload in frames:
            expect(0 <= sid < 2**31 and 0 <= ftype < 256 and 0 <= flags < 256
                   and len(payload) <= min(first, f.MAX_FRAME_LIMIT), f"bad frame {ftype, flags, sid}")


def _raw(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">L", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">L", sid) + payload


def seeds() -> list[bytes]:
    """A client's real opening (preface frames, SETTINGS, HEADERS, DATA, PING, WINDOW_UPDATE),
    frames of every type, an oversized frame, a reserved bit; under several chunkings."""
    opening = (f.settings({f.INITIAL_WINDOW_SIZE: 2**20, f.MAX_FRAME_SIZE: 2**14})
               + f.window_update(0, 2**20)
               + f.frame(f.HEADERS, f.END_HEADERS, 1, b"\x83\x86\x44\x0f/etcdserverpb.KV/Put")
               + f.frame(f.DATA, f.END_STREAM, 1, b"\x00\x00\x00\x00\x08\x0a\x03foo\x12\x01x")
               + f.frame(f.PING, 0, 0, b"12345678") + f.SETTINGS_ACK)
    every_type = b"".join(_raw(t, 0xFF, 2**31 + t, bytes(range(t * 3))) for t in range(12))
    oversized = struct.pack(">L", 2**14 + 1)[1:] + bytes([f.DATA, 0]) + struct.pack(">L", 1)
    streams = [opening, every_type, opening + oversized + opening, _raw(f.DATA, 0, 3, b"x" * 300),
               b"", opening[:5]]
    out = []
    for i, stream in enumerate(streams):
        for seed in (0, 1, 7 + i):
            out.append(bytes([0, 0, 0]) + struct.pack(">H", seed) + stream)
    out.append(bytes([4, 0x80 | (2 << 3) | 1, 1]) + struct.pack(">H", 3) + every_type)
    out.append(bytes([2, 0, 2]) + struct.pack(">H", 5) + every_type)
    return out
