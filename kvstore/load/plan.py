"""A run's plan: the options of one run, and each worker process's share of it."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RunPlan:
    scenario: str
    options: argparse.Namespace  # everything parsed, the scenario's own options included
    endpoints: list[str]
    procs: int
    conns: int  # connections per endpoint, in total over the workers (each has at least one)
    clients: int  # closed loop: concurrent clients, in total
    rate: float | None  # open loop: requests/s, in total; None: closed loop
    total: int | None  # requests to send, in total
    duration: float | None  # seconds of load
    max_in_flight: int  # open loop: per worker
    timeout: float | None  # each call's deadline
    drain: float  # seconds to wait for the answers in flight once the load stops

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    def worker(self, index: int) -> WorkerPlan:
        return WorkerPlan(
            run=self, index=index,
            conns=max(1, share(self.conns, self.procs, index)),
            clients=share(self.clients, self.procs, index),
            rate=None if self.rate is None else self.rate / self.procs,
            total=None if self.total is None else share(self.total, self.procs, index))

    def with_endpoints(self, endpoints: list[str]) -> RunPlan:
        return replace(self, endpoints=endpoints)


@dataclass(frozen=True)
class WorkerPlan:
    run: RunPlan
    index: int
    conns: int  # per endpoint
    clients: int
    rate: float | None
    total: int | None


def share(n: int, parts: int, index: int) -> int:
    """Part ``index`` of ``n`` split as evenly as whole numbers allow."""
    return n // parts + (1 if index < n % parts else 0)
