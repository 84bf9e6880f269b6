"""What a gRPC response is made of, read off one stream: response headers, messages, then the
status in the trailers (or in the one header block of a trailers-only response).

GrpcResponse is the stream's handler (kvstore.h2.client.ResponseHandler); a kind of call says
what to do with each message and with the outcome, which comes exactly once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from .messages import CompressedMessage, MessageReader
from .status import INTERNAL, OK, UNAVAILABLE, code_of_http_status, decode_message, parse_code


class GrpcResponse(ABC):
    __slots__ = ("_head_seen", "_status", "_reader", "ended")

    def __init__(self) -> None:
        self._head_seen = False
        self._status: dict[bytes, bytes] | None = None  # the trailers, once they came
        self._reader = MessageReader()
        self.ended = False  # the outcome is known (and told)

    # -- what a kind of call does -------------------------------------------------------------

    @abstractmethod
    def _message(self, message: bytes) -> None:
        """One whole response message."""

    @abstractmethod
    def _end(self, code: int, message: str) -> None:
        """The outcome: OK, or a gRPC code and its message. Called once."""

    # -- kvstore.h2.client.ResponseHandler ----------------------------------------------------

    def headers(self, headers, end_stream: bool) -> None:
        if self._head_seen:
            self._status = dict(headers)  # the trailers
            return
        self._head_seen = True
        fields = dict(headers)
        http = fields.get(b":status", b"")
        if http != b"200":
            # not a gRPC server's answer: the status is the HTTP one, as grpc maps it
            code = code_of_http_status(int(http)) if http.isdigit() else INTERNAL
            self.fail(code, f"unexpected HTTP status {http.decode('latin-1')}")
        elif not fields.get(b"content-type", b"").startswith(b"application/grpc"):
            self.fail(INTERNAL, "the response's content-type is not application/grpc")
        elif end_stream:
            self._status = fields  # a trailers-only response

    def data(self, payload: bytes) -> None:
        if self.ended:
            return
        try:
            messages = self._reader.feed(payload)
        except CompressedMessage:
            self.fail(INTERNAL, "compressed message without a negotiated encoding")
            return
        for message in messages:
            self._message(message)

    def end_of_stream(self) -> None:
        if self.ended:
            return
        status = self._status
        if status is None:
            self.fail(INTERNAL, "the stream ended without trailers")
            return
        code = parse_code(status.get(b"grpc-status"))
        if code != OK:
            self.fail(code, decode_message(status.get(b"grpc-message", b"")))
        elif self._reader.partial:
            self.fail(INTERNAL, "the stream ended inside a message")
        else:
            self.ended = True
            self._end(OK, "")

    def cancel(self) -> None:
        # RST_STREAM from the server, or the connection lost: nothing more will come
        self.fail(UNAVAILABLE, "the stream was reset or the connection lost")

    def fail(self, code: int, message: str) -> None:
        if not self.ended:
            self.ended = True
            self._end(code, message)
