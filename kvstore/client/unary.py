"""A unary call: its response handler (one message, then OK), and start_unary, which sends its
request. Their compiled twins are in ext/unary_client.pyx; unary_select picks them."""
from __future__ import annotations

from collections.abc import Callable

from ..h2.client import H2ClientConnection
from ..h2.stream import Stream
from .messages import PREFIX
from .response import GrpcResponse
from .status import INTERNAL, OK, UNAVAILABLE

# (0, response bytes) or (gRPC code, message)
Callback = Callable[[int, bytes | str], None]


class UnaryCall(GrpcResponse):
    """A unary call's response: one message, then OK."""

    __slots__ = ("_callback", "_response", "_count")

    def __init__(self, callback: Callback):
        super().__init__()
        self._callback = callback
        self._response = b""
        self._count = 0

    def _message(self, message: bytes) -> None:
        self._count += 1
        self._response = message

    def _end(self, code: int, message: str) -> None:
        callback, self._callback = self._callback, _told  # the handler may outlive the call
        if code != OK:
            callback(code, message)
        elif self._count == 1:
            callback(OK, self._response)
        else:
            # a unary call has one response message: grpc-go's errors for none or more
            callback(INTERNAL, "no response message" if not self._count
                     else "more than one response message for a unary call")


def _told(code: int, payload: bytes | str) -> None:
    pass


def start_unary(conn: H2ClientConnection, block: bytes, message: bytes,
                callback: Callback) -> Stream | None:
    """Sends one request (its header block encoded for open_stream_encoded) on a new stream.
    The callback is never called before this returns; if the connection cannot take the call,
    it is called soon with UNAVAILABLE, and None returned."""
    call = UnaryCall(callback)
    try:
        # the request whole: flow control holds back what the windows do not take yet
        return conn.open_request(block, call, PREFIX.pack(0, len(message)), message)
    except ConnectionError as e:
        conn.loop.call_soon(call.fail, UNAVAILABLE, str(e))
        return None
