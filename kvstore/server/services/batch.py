"""What a streaming service yields when it has several responses at once."""
from __future__ import annotations


class ResponseBatch(list):
    """Several responses of a stream, serialized, in order: what a streaming service yields
    when it has many at once (a watch stream's queue), so a transport sends them together
    (h2: one DATA write of consecutive gRPC messages) instead of one turn of the stream each."""

    __slots__ = ()
