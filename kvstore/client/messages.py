"""gRPC's length-prefixed messages: one framed for sending, and a reader that cuts the
received DATA back into whole messages."""
from __future__ import annotations

import struct

PREFIX = struct.Struct(">BL")  # gRPC message prefix: compressed flag, big-endian length


class CompressedMessage(Exception):
    """A message flagged compressed: we send no grpc-accept-encoding, so none may come."""


def framed(message: bytes) -> bytes:
    return PREFIX.pack(0, len(message)) + message


class MessageReader:
    """Bytes in as DATA frames carry them; whole messages out as they complete (a partial one
    waits for the next frame)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, payload: bytes) -> list[bytes]:
        buf = self._buf
        if not buf and len(payload) >= 5:
            # the common case, one whole message in one frame: no copy into the buffer
            compressed, n = PREFIX.unpack_from(payload)
            if len(payload) == n + 5:
                if compressed:
                    raise CompressedMessage()
                return [payload[5:]]
        buf += payload
        out = []
        pos = 0
        while len(buf) - pos >= PREFIX.size:
            compressed, n = PREFIX.unpack_from(buf, pos)
            if len(buf) - pos - PREFIX.size < n:
                break
            if compressed:
                raise CompressedMessage()
            out.append(bytes(buf[pos + PREFIX.size:pos + PREFIX.size + n]))
            pos += PREFIX.size + n
        del buf[:pos]
        return out

    @property
    def partial(self) -> bool:
        """Whether a message has begun and not ended."""
        return bool(self._buf)
