"""A worker process: its own event loop (uvloop), connections and share of the load.

It talks to the coordinator over a pipe. Worker -> coordinator: ("ready", i) once connected
and started; ("second", i, SecondReport) each second and once more for the last part-second;
("lost", i, endpoint, t) when an endpoint is gone; ("done", i, WorkerDone) at the end;
("error", i, text) if it fails. Coordinator -> worker: ("go", t0) with the start time on the
monotonic clock, which all processes of the machine share; ("stop",) to end early.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ..client import Client, GrpcError
from .connect import connect_for_run
from .liveness import Liveness
from .loops import CallLoop, ClosedLoop, Driver, OpenLoop
from .plan import WorkerPlan
from .recorder import Recorder, SecondReport
from .scenario import Context, UnaryScenario
from .scenarios import SCENARIOS

# Seconds in a row in which every answer was UNAVAILABLE (none OK) before the run is given up
# as lost, though the server still accepts connections (ours are dead and stay so).
ALL_UNAVAILABLE_SECONDS = 2


@dataclass
class WorkerDone:
    reason: str  # "completed", "stopped" or "lost"
    elapsed: float  # from t0 to the last answer (or the drain's end)
    cpu_seconds: float  # this process's CPU time from t0 to the end
    cpu_seconds_total: float  # this process's CPU time since it started


class WorkerFailed(Exception):
    """An expected failure (cannot connect, a bad option): its message is enough."""


def worker_main(plan: WorkerPlan, pipe: Connection) -> None:
    """The worker process's entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's: it says stop
    random.seed()  # not the state of the process this one was forked from
    try:
        _run_loop(Worker(plan, pipe).run())
    except WorkerFailed as e:
        pipe.send(("error", plan.index, str(e)))
    except BaseException:
        pipe.send(("error", plan.index, traceback.format_exc()))
    finally:
        pipe.close()


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


class Worker:
    def __init__(self, plan: WorkerPlan, pipe: Connection):
        self.plan = plan
        self.pipe = pipe
        self.recorder = Recorder()
        self.reason = "completed"
        self.t0: float | None = None  # on the perf_counter clock
        self._go: asyncio.Future[float] | None = None
        self._driver: Driver | None = None
        self._ticks = 0  # seconds reported
        self._all_unavailable = 0  # seconds in a row with UNAVAILABLE answers only

    async def run(self) -> None:
        plan, run = self.plan, self.plan.run
        loop = asyncio.get_running_loop()
        self._go = loop.create_future()
        loop.add_reader(self.pipe.fileno(), self._on_message)
        clients = await _connect_all(run.endpoints, plan.conns, run.options)
        try:
            scenario = SCENARIOS[run.scenario](run.options)
            ctx = Context(endpoints=run.endpoints, clients=clients, recorder=self.recorder,
                          worker=plan.index, workers=run.procs, timeout=run.timeout)
            await scenario.start(ctx)
            driver_class: type[Driver]
            if run.open_loop:
                driver_class = OpenLoop
            else:
                driver_class = CallLoop if isinstance(scenario, UnaryScenario) else ClosedLoop
            driver = self._driver = driver_class(plan, scenario, ctx, self.recorder,
                                                 Liveness(run.endpoints, self._lost))
            self.pipe.send(("ready", plan.index))
            try:
                t0_monotonic = await self._go
            except asyncio.CancelledError:  # stopped before the start: nothing to report
                self.pipe.send(("done", plan.index, WorkerDone("stopped", 0.0, 0.0, time.process_time())))
                return
            # perf_counter is the monotonic clock on Linux; convert in case it is not
            t0 = self.t0 = t0_monotonic + (time.perf_counter() - time.monotonic())
            await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
            cpu0 = time.process_time()
            ticker = asyncio.ensure_future(self._tick(t0))
            if run.duration is not None:
                loop.call_later(max(0.0, t0 + run.duration - time.perf_counter()), self._stop, "completed")
            if not driver.stopping:
                await driver.run(t0)
            # a lost server's calls fail at once; a live one's are worth waiting for
            await driver.drain(run.drain if self.reason != "lost" else min(run.drain, 1.0))
            end = time.perf_counter()
            await scenario.settle(ctx)  # what the last requests still owe (watch events)
            ticker.cancel()
            last = self._ticks + 1
            self._report(self.recorder.flush(last, max(0.0, end - (t0 + last - 1))))
            cpu = time.process_time()
            self.pipe.send(("done", plan.index, WorkerDone(self.reason, end - t0, cpu - cpu0, cpu)))
            await scenario.stop(ctx)
        finally:
            loop.remove_reader(self.pipe.fileno())
            await _close_all(clients)

    async def _tick(self, t0: float) -> None:
        while True:
            k = self._ticks + 1
            await asyncio.sleep(max(0.0, t0 + k - time.perf_counter()))
            self._ticks = k
            report = self.recorder.flush(k, 1.0)
            self._report(report)
            self._watch_unavailable(report)

    def _report(self, report: SecondReport) -> None:
        self.pipe.send(("second", self.plan.index, report))

    def _watch_unavailable(self, report: SecondReport) -> None:
        """Answers all UNAVAILABLE for ALL_UNAVAILABLE_SECONDS: connections lost for good."""
        ok = sum(op.ok for op in report.ops.values())
        unavailable = sum(op.errors.get("UNAVAILABLE", 0) for op in report.ops.values())
        self._all_unavailable = self._all_unavailable + 1 if unavailable and not ok else 0
        if self._all_unavailable >= ALL_UNAVAILABLE_SECONDS:
            self._lost(",".join(self.plan.run.endpoints))

    def _lost(self, endpoint: str) -> None:
        if self.reason == "lost":
            return
        t = 0.0 if self.t0 is None else time.perf_counter() - self.t0
        self.pipe.send(("lost", self.plan.index, endpoint, t))
        self._stop("lost")

    def _stop(self, reason: str) -> None:
        driver = self._driver
        if driver is None or driver.stopping:
            return
        self.reason = reason
        driver.stop(at_end=reason == "completed")

    def _on_message(self) -> None:
        while True:
            try:
                if not self.pipe.poll():
                    return
                message = self.pipe.recv()
            except (EOFError, OSError):  # the coordinator is gone: stop
                message = ("stop",)
            if message[0] == "go" and self._go is not None and not self._go.done():
                self._go.set_result(message[1])
            elif message[0] == "stop":
                asyncio.get_running_loop().remove_reader(self.pipe.fileno())
                if self._go is not None and not self._go.done():
                    self._go.cancel()
                self._stop("stopped")
                return


async def _connect_all(endpoints: list[str], conns: int,
                       options: argparse.Namespace) -> list[Client]:
    """``conns`` connections to each endpoint, interleaved (see Context.clients)."""
    clients: list[Client] = []
    try:
        for _ in range(conns):
            for endpoint in endpoints:
                try:
                    clients.append(await connect_for_run(endpoint, options))
                except (OSError, ValueError, GrpcError) as e:  # GrpcError: the login
                    raise WorkerFailed(f"cannot connect to {endpoint}: {e}") from None
    except BaseException:
        await _close_all(clients)
        raise
    return clients


async def _close_all(clients: list[Client]) -> None:
    """Gracefully (GOAWAY), but a server that does not close within a second is left."""
    closing = [asyncio.ensure_future(c.close()) for c in clients]
    if closing:
        await asyncio.wait(closing, timeout=1.0)
