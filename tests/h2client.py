"""A deliberately small raw HTTP/2 client for transport tests: it sends exactly the frames a
test asks for (including wrong ones) and reads what the server answers."""
from __future__ import annotations

import socket
import struct
import time

from kvstore.h2 import frames as f
from kvstore.h2.connection import H2Connection
from kvstore.server.transport.h2.grpc_call import literal

_PREFIX = struct.Struct(">BL")


def request_headers(path: bytes, authority: bytes = b"127.0.0.1", extra=()) -> bytes:
    """An HPACK block of literals only (no dynamic table), as any encoder may send."""
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
              (b":authority", authority), (b"content-type", b"application/grpc"),
              (b"te", b"trailers"), *extra]
    return b"".join(literal(n, v) for n, v in fields)


def grpc_message(message) -> bytes:
    body = message.SerializeToString()
    return _PREFIX.pack(0, len(body)) + body


class RawH2:
    def __init__(self, port: int, settings: dict | None = None, preface: bytes = f.PREFACE):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.sock.sendall(preface + f.settings(settings or {}))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self, ftype, flags, sid, payload=b"") -> None:
        self.send(f.frame(ftype, flags, sid, payload))

    def read_frame(self, timeout: float = 5.0):
        """(type, flags, stream id, payload), or None when the server closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                length, ftype, flags, sid = f.parse_header(self.buf, 0)
                if len(self.buf) >= 9 + length:
                    payload = self.buf[9:9 + length]
                    self.buf = self.buf[9 + length:]
                    return ftype, flags, sid, payload
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no frame from the server") from None
            if not chunk:
                return None
            self.buf += chunk

    def frames_until(self, pred, timeout: float = 5.0) -> list:
        out = []
        while True:
            fr = self.read_frame(timeout)
            if fr is None:
                return out
            out.append(fr)
            if pred(fr):
                return out

    def close(self) -> None:
        self.sock.close()


class MemoryTransport:
    """One side's transport: what it writes, the peer receives at once."""

    def __init__(self, peername: tuple[str, int] | None = None) -> None:
        self.peer: H2Connection | None = None
        self.closed = False
        self.written: list[bytes] = []
        self.peername = peername

    def write(self, data) -> None:
        data = bytes(data)
        self.written.append(data)
        if not self.closed and self.peer is not None:
            self.peer.data_received(data)

    def writelines(self, parts) -> None:
        self.write(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return self.peername if name == "peername" and self.peername else default

    def pause_reading(self) -> None:  # the connection's turns: nothing to pause in memory
        pass

    def resume_reading(self) -> None:
        pass
