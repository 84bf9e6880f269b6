"""The coordinator: prepares a run, starts the worker processes, gathers their seconds.

A run: the scenario's ``prepare`` here, on connections of our own; then ``--procs`` workers
(forked from a forkserver that has imported the worker code once), each connecting and starting
its share; then one start time for all; then the workers' reports until each is done. An
endpoint that is lost, a worker that fails, or Ctrl-C stops them all: the results gathered so
far are kept, marked with how the run ended.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Coroutine
from multiprocessing.connection import Connection
from typing import Any, TypeVar, cast

from ..api import rpc_pb2 as pb
from ..client import Client, GrpcError
from .connect import connect_for_run
from .plan import RunPlan
from .progress import Progress
from .recorder import Recorder
from .results import RunResults
from .scenario import Context
from .scenarios import SCENARIOS
from .worker import WorkerDone, worker_main

READY_TIMEOUT = 60.0  # for the workers to connect and start their scenario
START_DELAY = 0.05  # from "go" to t0: every worker gets the message before the clock starts
STOP_GRACE = 5.0  # beyond the drain, for stopped workers to report before they are terminated


class LoadError(Exception):
    """The run could not start (cannot connect, a scenario's bad option): a message will do."""


def run(plan: RunPlan, name: str, progress: Progress) -> RunResults:
    results = RunResults(name, plan)
    results.server_versions = _run_async(_prepare(plan))
    _Coordinator(plan, results, progress).run()
    return results


async def _prepare(plan: RunPlan) -> dict[str, str]:
    """The scenario's prepare, on one connection to each endpoint; the servers' versions."""
    clients: list[Client] = []
    try:
        for endpoint in plan.endpoints:
            try:
                clients.append(await connect_for_run(endpoint, plan.options))
            except (OSError, ValueError, GrpcError) as e:  # GrpcError: the login
                raise LoadError(f"cannot connect to {endpoint}: {e}") from None
        versions = {ep: await _server_version(c) for ep, c in zip(plan.endpoints, clients)}
        scenario = SCENARIOS[plan.scenario](plan.options)
        ctx = Context(endpoints=plan.endpoints, clients=clients, recorder=Recorder(), worker=None,
                      workers=plan.procs, timeout=plan.timeout)
        try:
            await scenario.prepare(ctx)
        except GrpcError as e:
            raise LoadError(f"preparing {plan.scenario} on {', '.join(plan.endpoints)}: {e}") from None
        return versions
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def _server_version(client: Client) -> str:
    """What Maintenance.Status says the server is (etcd's version, as kvstore reports it too)."""
    try:
        answer = await client.channel.unary(b"/etcdserverpb.Maintenance/Status", b"", 5.0)
    except GrpcError as e:
        return f"unknown ({e.name})"
    return pb.StatusResponse.FromString(answer).version


T = TypeVar("T")


def _run_async(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _mp_context() -> Any:
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # no forkserver on this platform
        return multiprocessing.get_context("spawn")
    ctx.set_forkserver_preload(["kvstore.load.worker"])
    return ctx


class _Coordinator:
    def __init__(self, plan: RunPlan, results: RunResults, progress: Progress):
        self.plan = plan
        self.results = results
        self.progress = progress
        self.pipes: dict[int, Connection] = {}
        self.processes: dict[int, Any] = {}
        self.ready: set[int] = set()
        self.stopping_since: float | None = None
        self.t0: float | None = None

    def run(self) -> None:
        plan = self.plan
        mp = _mp_context()
        for i in range(plan.procs):
            ours, theirs = mp.Pipe()
            process = mp.Process(target=worker_main, args=(plan.worker(i), theirs),
                                 name=f"kvstore-load-{i}", daemon=True)
            process.start()
            theirs.close()
            self.pipes[i], self.processes[i] = ours, process
        cpu0 = time.process_time()
        try:
            self._wait_ready()
            if self.results.ended == "completed":
                self._go()
                self._gather()
        except KeyboardInterrupt:
            self._end("interrupted", "interrupted")
            self._gather()
        finally:
            self.results.coordinator_cpu_seconds = time.process_time() - cpu0
            self.results.close()
            self.progress.end()
            self._reap()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while len(self.ready) < len(self.pipes) and self.results.ended == "completed":
            if time.monotonic() > deadline:
                self._end("failed", f"workers not ready after {READY_TIMEOUT:.0f}s")
                return
            self._poll(0.2)
        if self.results.ended != "completed":
            self._gather()  # the others' reports, so they exit cleanly

    def _go(self) -> None:
        self.t0 = time.monotonic() + START_DELAY
        self.results.start()
        self.progress.begin(self.results.name, self.plan)
        for pipe in self.pipes.values():
            pipe.send(("go", self.t0))

    def _gather(self) -> None:
        plan = self.plan
        while self.pipes:
            self._poll(0.2)
            if self.t0 is not None:
                self.progress.update(self.results, max(0.0, time.monotonic() - self.t0))
            if self.stopping_since is not None and \
                    time.monotonic() - self.stopping_since > plan.drain + STOP_GRACE:
                for i in list(self.pipes):
                    self.processes[i].terminate()
                    self._gone(i)
                if self.results.ended == "completed":
                    self.results.ended = "failed"
                self.results.message = self.results.message or "workers did not stop; terminated"

    def _poll(self, timeout: float) -> None:
        by_pipe = {pipe: i for i, pipe in self.pipes.items()}
        for ready in multiprocessing.connection.wait(list(by_pipe), timeout):
            pipe = cast(Connection, ready)  # we waited on Connections only
            i = by_pipe[pipe]
            try:
                while i in self.pipes and pipe.poll():
                    self._handle(pipe.recv())
            except (EOFError, OSError):
                self._gone(i)

    def _handle(self, message: tuple) -> None:
        kind, i = message[0], message[1]
        if kind == "second":
            self.results.add_second(i, message[2])
        elif kind == "ready":
            self.ready.add(i)
        elif kind == "done":
            done: WorkerDone = message[2]
            self.results.worker_done(i, done)
            self._close(i)
        elif kind == "lost":
            endpoint, t = message[2], message[3]
            if self.results.lost is None:
                self.results.lost = (endpoint, t)
                self._end("lost", f"endpoint {endpoint} lost at t={t:.1f}s")
        elif kind == "error":
            self._close(i)
            self._end("failed", f"worker {i}: {message[2]}")

    def _gone(self, i: int) -> None:
        """A worker's pipe closed without its "done": it died."""
        if i not in self.pipes:
            return
        self._close(i)
        process = self.processes[i]
        process.join(1.0)
        self._end("failed", f"worker {i} exited unexpectedly (exit code {process.exitcode})")

    def _close(self, i: int) -> None:
        pipe = self.pipes.pop(i, None)
        if pipe is not None:
            pipe.close()

    def _end(self, how: str, message: str) -> None:
        """Ends the run early: every worker is told to stop (the first reason is kept)."""
        if self.results.ended == "completed":
            self.results.ended = how
            self.results.message = message
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        for pipe in self.pipes.values():
            try:
                pipe.send(("stop",))
            except OSError:
                pass  # that one is gone already; its EOF will tell

    def _reap(self) -> None:
        for i, process in self.processes.items():
            process.join(2.0)
            if process.is_alive():
                process.terminate()
                process.join(2.0)
            self._close(i)
