"""The Scenario interface: what a workload does, apart from how it is paced and measured.

A scenario is a class registered in ``kvstore.load.scenarios.SCENARIOS``. It is constructed
from the parsed options in the coordinator (for ``prepare``) and in every worker process (for
``start``, ``request`` and ``stop``), so per-worker state lives on ``self``.

``request`` is the only code that touches the client: it issues one request and returns the
op label the outcome counts under, with an awaitable of the answer (a coroutine, or a Future
that a callback-style client resolves). The runner measures it: OK with its latency, or a
``GrpcError`` counted by code name under that label. A scenario with several kinds of request
returns a different label for each (``WeightedMix`` interleaves them at fixed rates), and one
that measures something the runner cannot see (watch events delivered, put-to-event latency)
records it itself through ``ctx.recorder``.
"""
from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..client import Client
from ..client.connection import Channel
from .recorder import Recorder


@dataclass
class Context:
    """What a scenario gets to work with, in the coordinator (``worker`` is None: prepare) or in
    one worker process."""

    endpoints: list[str]
    # every connection of this process, interleaved over the endpoints: clients[i] is
    # connected to endpoints[i % len(endpoints)]
    clients: list[Client]
    recorder: Recorder
    worker: int | None  # 0 .. workers-1; None in the coordinator
    workers: int
    timeout: float | None  # the deadline to give each call (--timeout), None for none
    # closed loop: the client sending the request being made (set by the loop); None: open loop
    lane: int | None = None

    def client(self, seq: int) -> Client:
        """The connection request ``seq`` goes out on. In a closed loop, the sending client's
        own: client i on connection i mod their number, as etcd's benchmark ties its clients to
        its connections (an answer's next request then leaves on the connection that brought
        the answer, in the same write); in an open loop, round robin by ``seq``."""
        lane = self.lane
        return self.clients[(seq if lane is None else lane) % len(self.clients)]

    def clients_of(self, endpoint: str) -> list[Client]:
        """This process's connections to ``endpoint`` (a scenario that routes by key)."""
        n = len(self.endpoints)
        i = self.endpoints.index(endpoint)
        return self.clients[i::n]


Outcome = tuple[str, Awaitable[Any]]  # (op label, the answer)
# A request that is one unary call whose answer needs no reading beyond its status:
# (op label, the channel, the method's path, the request message's bytes)
UnaryRequest = tuple[str, Channel, bytes, bytes]


class Scenario(ABC):
    """The base of every scenario: ``request`` is the one method a subclass must define."""

    name: ClassVar[str]
    help: ClassVar[str] = ""
    # --key-space-size when not given: etcd benchmark's 1 for writes; a read needs keys to read
    default_key_space_size: ClassVar[int] = 1

    def __init__(self, options: argparse.Namespace):
        self.options = options

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The scenario's own options, besides the runner's and the key/value ones."""

    def endpoints(self, given: list[str]) -> list[str]:
        """The endpoints to connect to, from the ones the run was given (a kube scenario adds
        the partitions its resources are routed to)."""
        return given

    def default_rate(self) -> float | None:
        """Requests/s in total when --rate is not given (open loop), or None: closed loop.
        E.g. kube-leases: one renewal a node every 10 s."""
        return None

    async def prepare(self, ctx: Context) -> None:
        """Once, in the coordinator, before any worker starts (e.g. write the keys to read)."""

    async def start(self, ctx: Context) -> None:
        """In each worker, before the clock starts (e.g. open watch streams)."""

    @abstractmethod
    def request(self, ctx: Context, seq: int) -> Outcome:
        """Issues request ``seq`` (unique over all workers; 0, 1, ... per run) and returns its
        op label and its answer to await."""

    async def settle(self, ctx: Context) -> None:
        """In each worker, once the requests are answered and before its last report: wait for
        what they still owe the scenario's own measurements (the events of the last puts)."""

    async def stop(self, ctx: Context) -> None:
        """In each worker, after the clock and the requests in flight (close streams)."""


class UnaryScenario(Scenario):
    """A scenario whose requests are plain unary calls, their answers read for their status
    only: it describes each (``unary``), and the closed loop sends them itself on the
    channel's callback API, with no coroutine or Future per request (loops.CallLoop)."""

    @abstractmethod
    def unary(self, ctx: Context, seq: int) -> UnaryRequest:
        """Request ``seq`` as one unary call, not sent."""

    def request(self, ctx: Context, seq: int) -> Outcome:
        label, channel, path, message = self.unary(ctx, seq)
        return label, channel.unary(path, message, ctx.timeout)
