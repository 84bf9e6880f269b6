"""A StreamingCall typed with protobuf messages: requests serialized out, responses parsed."""
from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from .stream import StreamingCall

ResponseT = TypeVar("ResponseT")


class Serializable(Protocol):
    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # noqa: N802


class MessageStream(Generic[ResponseT]):
    def __init__(self, call: StreamingCall, parse: Callable[[bytes], ResponseT]):
        self.call = call
        self._parse = parse

    async def send(self, request: Serializable) -> None:
        await self.call.send(request.SerializeToString())

    def done_writing(self) -> None:
        self.call.done_writing()

    def close(self) -> None:
        """Cancels the call (RST_STREAM CANCEL): reading on raises GrpcError CANCELLED."""
        self.call.cancel()

    def __aiter__(self) -> MessageStream[ResponseT]:
        return self

    async def __anext__(self) -> ResponseT:
        return self._parse(await self.call.__anext__())

    async def __aenter__(self) -> MessageStream[ResponseT]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()
