"""gRPC over one HTTP/2 stream: request headers, length-prefixed messages, status trailers.

A GrpcCall is the stream handler the connection feeds. It finds the method, decodes request
messages as they complete, runs the service method (unary, server-streaming or bidirectional)
and writes responses and the status. Response headers and trailers are HPACK blocks built
from literals that never touch the dynamic table, so they can be pre-encoded.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections import deque
from urllib.parse import quote

from .... import errors
from ...services.batch import ResponseBatch
from ...services.feed import ResponseFeed
from ..methods import CallCounts, serialize

log = logging.getLogger(__name__)

_PREFIX = struct.Struct(">BL")
_LENGTH = struct.Struct(">L")

# Status codes (grpc's codes.Code).
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 1, 2, 3, 4
RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 8, 12, 13, 14
CODE_NUMBERS = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3,
                "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5, "ALREADY_EXISTS": 6,
                "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
                "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13,
                "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16}


def _int(n: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) with ``first`` holding the pattern bits."""
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes((first | n,))
    out = bytearray((first | limit,))
    n -= limit
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """Literal header field without indexing, new name (RFC 7541 §6.2.2), no Huffman."""
    return b"\x00" + _int(len(name), 7, 0) + name + _int(len(value), 7, 0) + value


def literal_indexed_name(index: int, value: bytes) -> bytes:
    """Literal header field without indexing, name from the static table."""
    return _int(index, 4, 0) + _int(len(value), 7, 0) + value


STATUS_200 = b"\x88"  # :status 200, static table index 8
CONTENT_TYPE_GRPC = literal_indexed_name(31, b"application/grpc")
RESPONSE_HEADERS = STATUS_200 + CONTENT_TYPE_GRPC
TRAILERS_OK = literal(b"grpc-status", b"0")


def status_block(code: int, message: str = "") -> bytes:
    block = literal(b"grpc-status", str(code).encode())
    if message:
        # percent-encoding as gRPC specifies: printable ASCII except % stays as is
        block += literal(b"grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode())
    return block


def parse_timeout(value: bytes) -> float | None:
    """grpc-timeout: up to 8 digits and a unit (H M S m u n)."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    scale = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}.get(value[-1:])
    if scale is None:
        return None
    return int(value[:-1]) * scale


class Method:
    """A service method as the transport calls it, and what is counted of its calls."""

    __slots__ = ("func", "decode", "kind", "counts", "at_once", "feed")

    def __init__(self, func, decode, kind: str, counts: CallCounts | None = None, at_once=None,
                 feed=None):
        self.func = func
        self.decode = decode  # bytes -> request message
        self.kind = kind  # "unary", "server_stream", "bidi"
        self.counts = counts or CallCounts("", "", kind)
        # bidi: request -> serialized response, or None when it must wait for the method
        self.at_once = at_once
        # bidi: requests -> ResponseFeed (services/feed.py), sent when it says it has some
        self.feed = feed


# Where a call refused before it found its method counts (nobody reads it): the calls of an
# unknown method are not a method's, as grpc-go's interceptors never see them.
_UNCOUNTED = CallCounts("", "", "unary")


# Requests a streaming method has not consumed yet: past BACKLOG_HIGH the call stops taking
# more (flow control holds the client back) until the method is down to BACKLOG_LOW.
BACKLOG_HIGH = 256
BACKLOG_LOW = 64
YIELD_EVERY = 64  # requests a streaming method reads in a row before the loop goes round


class RequestStream:
    """The async iterator of request messages a streaming method reads. ``on_backlog(True)``
    when it holds BACKLOG_HIGH of them, ``(False)`` once the method has read it down."""

    def __init__(self, on_backlog):
        self._items: deque = deque()
        self._waiter: asyncio.Future | None = None
        self._ended = False
        self._on_backlog = on_backlog
        self.backlogged = False
        self._in_a_row = 0  # requests handed out since the method last let the loop go round

    def push(self, message) -> None:
        self._items.append(message)
        if len(self._items) >= BACKLOG_HIGH and not self.backlogged and not self._ended:
            self.backlogged = True
            self._on_backlog(True)
        self._wake()

    def end(self) -> None:
        self._ended = True
        if self.backlogged:  # nothing more comes: whatever held the connection lets go
            self.backlogged = False
            self._on_backlog(False)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self._items or self._in_a_row >= YIELD_EVERY:
            # a method that never waits otherwise (its answers ready at once) still lets the
            # loop go round between bursts of requests
            self._in_a_row = 0
            await asyncio.sleep(0)
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        self._in_a_row += 1
        item = self._items.popleft()
        if self.backlogged and len(self._items) <= BACKLOG_LOW:
            self.backlogged = False
            self._on_backlog(False)
        return item


class GrpcCall:
    __slots__ = ("conn", "stream", "method", "max_receive", "_buf", "_requests", "_task",
                 "_timer", "_gzip", "_sent_headers", "_done", "_unary_request", "_headers",
                 "_intercept", "_end_pending", "_counts", "_intercepted", "_feed",
                 "_feed_due", "_feed_held")

    def __init__(self, conn, stream, headers, methods: dict[bytes, Method], max_receive: int, intercept=None):
        self.conn = conn
        self.stream = stream
        self.max_receive = max_receive
        self._headers = headers  # the call's metadata, for the interceptor
        self._intercept = intercept  # (call type, [(name, value)]) -> None, or raises EtcdError
        self._buf = bytearray()
        self._requests: RequestStream | None = None
        self._task: asyncio.Task | None = None
        self._timer = None
        self._gzip = False
        self._sent_headers = False
        self._done = False
        self._unary_request = None
        self._end_pending = False
        self._intercepted = False  # the interceptor ran for an answer given at once
        self._feed: ResponseFeed | None = None  # the method's, when it has one
        self._feed_due = False  # a _pump is scheduled
        self._feed_held = False  # the feed waits for the client to read (a task waits)
        self.method: Method | None = None  # None: the call was refused (answered at once)
        self._counts = _UNCOUNTED
        path = content_type = None
        method_name = b""
        timeout = None
        for name, value in headers:
            if name == b":path":
                path = value
            elif name == b":method":
                method_name = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout = parse_timeout(value)
            elif name == b"grpc-encoding":
                self._gzip = value == b"gzip"
        if method_name != b"POST" or path is None:
            self._http_error(b"405" if path is not None else b"400")
            return
        if content_type is None or not content_type.startswith(b"application/grpc"):
            self._http_error(b"415")
            return
        method = methods.get(path)
        if method is None:
            self._finish(UNIMPLEMENTED, _unknown_method(path))
            return
        self.method = method
        self._counts = counts = method.counts
        counts.started += 1
        if method.kind == "bidi":
            self._requests = RequestStream(self._backlog)
            if method.feed is not None:
                self._start_feed()
            elif method.at_once is None:  # else the method starts with the first request not
                self._start(self._run_bidi())  # answered at once
        if timeout is not None:
            self._timer = conn.loop.call_later(timeout, self._deadline)

    # -- from the connection -------------------------------------------------------------------

    def _backlog(self, backlogged: bool) -> None:
        """The method has BACKLOG_HIGH requests to read: flow control holds the client back
        on this stream (what came meanwhile waits in ``_buf``, unparsed, at most the stream's
        window) until it has read them down."""
        if backlogged:
            self.conn.hold_stream(self.stream)
            return
        self.conn.release_stream(self.stream)
        if self._buf and not self._done:
            self.data(b"")
        requests = self._requests
        if self._end_pending and requests is not None and not requests.backlogged:
            requests.end()  # the client's END_STREAM, after what it sent before it

    def data(self, payload: bytes) -> None:
        if self._done or self.method is None:
            return
        requests = self._requests
        if requests is not None and requests.backlogged:
            self._buf += payload
            return
        if not self._buf and len(payload) >= 5 and payload[0] == 0:
            # the usual case: the frame holds exactly one whole uncompressed message
            (length,) = _LENGTH.unpack_from(payload, 1)
            if length == len(payload) - 5 and length <= self.max_receive:
                self._deliver(payload[5:])
                return
        buf = self._buf
        buf += payload
        pos = 0
        n = len(buf)
        while n - pos >= 5:
            compressed, length = _PREFIX.unpack_from(buf, pos)
            if length > self.max_receive:
                self._finish(RESOURCE_EXHAUSTED, "grpc: received message larger than max "
                                                 f"({length} vs. {self.max_receive})")
                return
            if n - pos - 5 < length:
                break
            raw = bytes(buf[pos + 5:pos + 5 + length])
            pos += 5 + length
            if compressed:
                if compressed != 1:  # grpc-go's checkRecvPayload: 0 or 1, nothing else
                    self._finish(INTERNAL, f"grpc: received unexpected payload format {compressed}")
                    return
                if not self._gzip:
                    self._finish(INTERNAL, "grpc: compressed flag set with identity or empty encoding")
                    return
                self.conn.spend(self.max_receive >> 10)  # what inflating may cost, at most
                try:
                    raw = _inflate(raw, self.max_receive)
                except zlib.error as e:
                    self._finish(INTERNAL, f"grpc: failed to decompress the received message: {e}")
                    return
                except _TooLarge as e:
                    self._finish(RESOURCE_EXHAUSTED, f"grpc: received message after decompression "
                                                     f"larger than max ({e.args[0]} vs. {self.max_receive})")
                    return
            self._deliver(raw)
            if self._done:
                return
            if requests is not None and requests.backlogged:
                break  # the rest is parsed once the method has read its backlog down
        del buf[:pos]

    def _deliver(self, raw: bytes) -> None:
        assert self.method is not None  # data() drops what comes for a refused call
        self._counts.received_bytes += len(raw)
        try:
            message = self.method.decode(raw)
        except errors.EtcdError as e:  # well formed, but refused as etcd refuses it
            self._failed(e)
            return
        except Exception as e:  # a malformed protobuf
            self._finish(INTERNAL, f"grpc: error unmarshalling request: {e}")
            return
        self._on_message(message)

    def _on_message(self, message) -> None:
        if self._requests is not None:
            if self._task is None and self._feed is None:  # answering at once so far
                if self._answer_at_once(message):
                    return
                self._start(self._run_bidi())
            self._requests.push(message)
        elif self._unary_request is None:
            self._unary_request = message
        else:
            self._finish(UNIMPLEMENTED, "grpc: too many request messages for a unary call")

    def _answer_at_once(self, message) -> bool:
        """Answers a bidi request on the spot if its method can (True), with no task: the
        interceptor runs once, as before the method (counted, checked; a method that answers
        at once reads no caller). False: the method runs, as a task, from this request on."""
        assert self.method is not None
        if not self._intercepted:
            self._intercepted = True
            if self._intercept is not None:
                try:
                    caller = self._intercept("stream", self._headers, self.conn.peer_cn)
                except Exception as e:
                    self._failed(e)
                    return True
                if caller is not None:  # this runs in the connection's context
                    caller.var.reset(caller)
        body = self.method.at_once(message)
        if body is None:
            return False
        if not self._send_streamed(body):
            self._start(self._run_bidi())  # a client behind on reading: the method's pace
        return True

    def end_of_stream(self) -> None:
        if self._done or self.method is None:
            return
        if self._requests is not None and self._task is None and self._feed is None:
            # all answered at once
            self._finish(OK)
            return
        if self._requests is not None:
            if self._requests.backlogged:
                self._end_pending = True  # once the requests still in _buf are delivered
            else:
                self._requests.end()
            return
        if self._unary_request is None:
            self._finish(INTERNAL, "grpc: no request message received for a unary call")
            return
        if self.method.kind == "unary":
            self._call_unary(self._unary_request)
        else:
            self._start(self._run_server_stream(self._unary_request))

    def cancel(self) -> None:
        """The client reset the stream or the connection went away."""
        if not self._done:
            self._counts.handled[CANCELLED] += 1
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        if self._requests is not None:
            self._requests.end()
        if self._feed is not None:
            self._feed.close()

    # -- running the method --------------------------------------------------------------------

    def _start(self, coro) -> None:
        self._task = self.conn.loop.create_task(coro)

    def _call_unary(self, request) -> None:
        """A unary method may answer at once (a response), later (a future: no task needed)
        or as a coroutine (run as a task)."""
        assert self.method is not None  # end_of_stream() returns first for a refused call
        caller = None
        try:
            if self._intercept is not None:
                caller = self._intercept("unary", self._headers, self.conn.peer_cn)
            result = self.method.func(request)
            # (a future is the common answer, a write's: asked first, iscoroutine is slower)
            if not isinstance(result, asyncio.Future) and asyncio.iscoroutine(result):
                self._start(self._run_unary(result))  # its task keeps the caller
                return
        except Exception as e:
            self._failed(e)
            return
        finally:
            if caller is not None:  # this runs in the connection's context, not a call's task
                caller.var.reset(caller)
        if isinstance(result, asyncio.Future):  # left running if the call is cancelled, as
            result.add_done_callback(self._on_future)  # etcd lets a proposed write complete
        else:
            self._respond(result)

    def _on_future(self, fut: asyncio.Future) -> None:
        if fut.cancelled() or self._done:
            return
        e = fut.exception()
        if e is not None:
            self._failed(e)
        else:
            self._respond(fut.result())

    async def _run_unary(self, coro) -> None:
        try:
            response = await coro
        except asyncio.CancelledError:
            return
        except Exception as e:
            self._failed(e)
            return
        self._respond(response)

    def _failed(self, e: BaseException) -> None:
        if isinstance(e, errors.EtcdError):
            self._finish(CODE_NUMBERS.get(e.code, UNKNOWN), e.message)
        else:
            # a bug, not an answer: said with what was asked, by whom; the server goes on
            log.error("%s", self._context(), exc_info=e)
            self._finish(UNKNOWN, f"Unexpected {type(e).__name__}: {e}")

    def _context(self) -> str:
        path = next((v for n, v in self._headers if n == b":path"), b"?").decode(errors="replace")
        transport = self.conn.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return f"{path} from {peer[0]}:{peer[1]} failed" if peer else f"{path} failed"

    def _respond(self, response) -> None:
        if self._done:
            return
        body = serialize(response)
        self._done = self._sent_headers = True
        counts = self._counts
        counts.sent_bytes += len(body)
        counts.handled[OK] += 1
        if self._timer is not None:
            self._timer.cancel()
        self.conn.send_response(self.stream, RESPONSE_HEADERS, _PREFIX.pack(0, len(body)), body,
                                TRAILERS_OK)

    async def _run_server_stream(self, request) -> None:
        assert self.method is not None  # started for a method found
        await self._stream_responses(self.method.func(request))

    async def _run_bidi(self) -> None:
        assert self.method is not None  # started for a method found
        await self._stream_responses(self.method.func(self._requests))

    def _send_streamed(self, response) -> bool:
        """One response of a stream (or a ResponseBatch of them), the response headers first;
        False when flow control holds it back."""
        if type(response) is ResponseBatch:
            return self._send_messages(response)
        self._headers_first()
        body = serialize(response)
        self._counts.sent_bytes += len(body)
        return self.conn.send_data(self.stream, _PREFIX.pack(0, len(body)) + body)

    def _send_messages(self, messages: list[bytes]) -> bool:
        """Consecutive serialized responses of a stream, in one write (their DATA frames built
        at once when the windows take them all), the response headers first; False when flow
        control holds some back."""
        self._headers_first()
        size = sum(map(len, messages))
        self._counts.sent_bytes += size
        return self.conn.send_grpc_messages(self.stream, messages, size + 5 * len(messages))

    def _headers_first(self) -> None:
        if not self._sent_headers:
            self.conn.send_headers(self.stream, RESPONSE_HEADERS)
            self._sent_headers = True

    async def _stream_responses(self, responses) -> None:
        conn, stream = self.conn, self.stream
        try:
            if self._intercept is not None and not self._intercepted:
                self._intercept("stream", self._headers, self.conn.peer_cn)
            async for response in responses:
                if self._done:
                    break
                if not self._send_streamed(response):
                    await conn.writable(stream)
                elif conn._write_paused or conn.output_waiting():
                    await conn.writable(stream)
        except asyncio.CancelledError:
            return
        except Exception as e:
            self._failed(e)
            return
        finally:
            if hasattr(responses, "aclose"):
                await responses.aclose()
        self._finish(OK)

    # -- a feed's responses, sent when it has some ----------------------------------------------

    def _start_feed(self) -> None:
        """The method as a ResponseFeed: its request reader is made in the caller's context
        (the interceptor's setting), which is reset right after, as for a unary call."""
        assert self.method is not None
        caller = None
        try:
            if self._intercept is not None:
                caller = self._intercept("stream", self._headers, self.conn.peer_cn)
            self._feed = feed = self.method.feed(self._requests)
        except Exception as e:
            self._failed(e)
            return
        finally:
            if caller is not None:
                caller.var.reset(caller)
        feed.start(self._feed_ready)

    def _feed_ready(self) -> None:
        # a turn's responses go out together, after the turn queued them, in the write that
        # carries the connection's other frames of the turn
        if not self._feed_due:
            self._feed_due = True
            self.conn.before_flush(self._pump)

    def _pump(self) -> None:
        self._feed_due = False
        if self._done or self._feed_held:
            return  # a held feed is taken once the client has read
        assert self._feed is not None
        try:
            responses = self._feed.take()
            if responses is None:
                self._finish(OK)
                return
            if not responses:
                return
            conn = self.conn
            if (not self._send_messages(responses) or conn._write_paused
                    or conn.output_waiting()):
                self._feed_held = True
                self._start(self._until_writable())
        except Exception as e:  # a bug: said, and the call ends (the server goes on)
            self._failed(e)

    async def _until_writable(self) -> None:
        try:
            await self.conn.writable(self.stream)
        except asyncio.CancelledError:
            return
        self._feed_held = False
        self._pump()

    # -- ending --------------------------------------------------------------------------------

    def _deadline(self) -> None:
        self._timer = None
        if not self._done:
            if self._task is not None:
                self._task.cancel()
            self._finish(DEADLINE_EXCEEDED, "context deadline exceeded")

    def _finish(self, code: int, message: str = "") -> None:
        if self._done:
            return
        self._done = True
        self._counts.handled[code] += 1
        if self._timer is not None:
            self._timer.cancel()
        if self._requests is not None:
            self._requests.end()
        if self._feed is not None:
            self._feed.close()
        block = TRAILERS_OK if code == OK and not message else status_block(code, message)
        if not self._sent_headers:  # trailers-only response
            block = RESPONSE_HEADERS + block
            self._sent_headers = True
        self.conn.send_headers(self.stream, block, end_stream=True)

    def _http_error(self, status: bytes) -> None:
        self._done = True
        block = literal_indexed_name(8, status) + CONTENT_TYPE_GRPC + status_block(
            INTERNAL if status != b"415" else UNKNOWN, f"invalid gRPC request ({status.decode()})")
        self.conn.send_headers(self.stream, block, end_stream=True)


class _TooLarge(Exception):
    """A compressed message inflates past the limit (args: at least how large)."""


def _inflate(raw: bytes, limit: int) -> bytes:
    """gzip-decoded ``raw``, never more than ``limit`` bytes of it: a small message may inflate
    to gigabytes (grpc-go stops at the limit too, with the same error)."""
    d = zlib.decompressobj(31)
    out = d.decompress(raw, limit + 1)
    if len(out) > limit:
        raise _TooLarge(len(out))
    if not d.eof:
        raise zlib.error("incomplete or truncated stream")
    return out


def _unknown_method(path: bytes) -> str:
    text = path.decode(errors="replace").lstrip("/")
    service, _, method = text.rpartition("/")
    if not service:
        return f"malformed method name: {path.decode(errors='replace')!r}"
    return f"unknown method {method} for service {service}"
