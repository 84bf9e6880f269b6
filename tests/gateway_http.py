"""A raw HTTP/1.1 client for the JSON gateway tests: it shows what a server really sent (the
status line, headers in order, chunks, trailers), which an HTTP library would smooth over."""
from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Response:
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes
    chunks: list[bytes] = field(default_factory=list)  # as sent, when chunked
    trailers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ")[1])

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def json(self):
        return json.loads(self.body)

    def shape(self) -> dict:
        """What two servers' answers must share: status line, headers (less Date and a
        length that depends on ids), chunking, trailers, and the body with header ids
        replaced."""
        return {"status": self.status_line,
                "headers": [(n, v) for n, v in self.headers if n not in ("Date", "Content-Length")],
                "chunked": bool(self.chunks), "trailers": self.trailers,
                "body": normalize(self.body)}


_IDS = re.compile(rb'"(cluster_id|member_id|raft_term)":"\d+"')


def normalize(body: bytes) -> str:
    """A JSON answer with the ids that differ between two servers (cluster, member, term)
    replaced; the rest byte for byte."""
    return _IDS.sub(lambda m: b'"' + m.group(1) + b'":"*"', body).decode("utf-8", errors="replace")


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes | str | None = b"", headers: dict | None = None,
                chunked_body: bool = False) -> None:
        if isinstance(body, str):
            body = body.encode()
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if chunked_body:
            lines.append("Transfer-Encoding: chunked")
            out = ("\r\n".join(lines) + "\r\n\r\n").encode()
            if body:
                out += chunk(body)
            self.send(out)
            return
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self._buf += data

    def _line(self, deadline: float) -> bytes:
        while (i := self._buf.find(b"\r\n")) < 0:
            self._fill(deadline)
        line = bytes(self._buf[:i])
        del self._buf[:i + 2]
        return line

    def _exactly(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self._fill(deadline)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def head(self, timeout: float = 10.0) -> Response:
        deadline = time.monotonic() + timeout
        status = self._line(deadline).decode("latin-1")
        headers = []
        while line := self._line(deadline):
            name, _, value = line.decode("latin-1").partition(": ")
            headers.append((name, value))
        return Response(status, headers, b"")

    def next_chunk(self, timeout: float = 10.0) -> bytes | None:
        """The next chunk of a chunked body; None at its end (the trailers are then read)."""
        deadline = time.monotonic() + timeout
        size = int(self._line(deadline).split(b";")[0], 16)
        if size == 0:
            return None
        data = self._exactly(size, deadline)
        assert self._exactly(2, deadline) == b"\r\n"
        return data

    def trailers(self, timeout: float = 10.0) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        out = []
        while line := self._line(deadline):
            name, _, value = line.decode("latin-1").partition(": ")
            out.append((name, value))
        return out

    def response(self, timeout: float = 10.0, method: str = "POST") -> Response:
        resp = self.head(timeout)
        if method == "HEAD":
            return resp
        length = resp.header("Content-Length")
        if resp.header("Transfer-Encoding") == "chunked":
            while (c := self.next_chunk(timeout)) is not None:
                resp.chunks.append(c)
            resp.trailers = self.trailers(timeout)
            resp.body = b"".join(resp.chunks)
        elif length is not None:
            resp.body = self._exactly(int(length), time.monotonic() + timeout)
        return resp

    def closed_by_server(self, within: float = 2.0) -> bool:
        deadline = time.monotonic() + within
        try:
            while time.monotonic() < deadline:
                self._fill(deadline)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        return False


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def post(port: int, path: str, body: bytes | str = b"", headers: dict | None = None,
         method: str = "POST") -> Response:
    with Connection(port) as c:
        c.request(method, path, body, headers)
        return c.response(method=method)
