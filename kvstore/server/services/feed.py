"""A streaming method's responses handed over when they are there, not awaited one by one.

A service may offer a bidirectional method as ``<Name>_feed(requests) -> ResponseFeed`` beside
its async generator. A transport that can (h2) then takes the responses when the feed tells it
there are some: no task wakes up, and no generator resumes, for each batch; the batches queued
in one turn of the event loop go out in one write. The feed reads the requests itself.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ResponseFeed(Protocol):
    def start(self, ready: Callable[[], None]) -> None:
        """``ready()`` is called when ``take`` has something new (responses, or the end),
        once until the next ``take``."""

    def take(self) -> list[bytes] | None:
        """Every response queued now, serialized, in order ([] for none); None once the
        feed has ended."""

    def close(self) -> None:
        """The call is over: stop reading requests, drop what is queued."""
