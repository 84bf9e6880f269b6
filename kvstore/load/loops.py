"""The two ways a worker paces requests.

Closed loop (etcd benchmark's way): each of N clients sends its next request when the previous
one is answered; a latency runs from the send to the answer.

Open loop (--rate): request i is due at t0 + i/rate, whatever the answers; a latency runs from
that intended time (or from the send, if that was earlier), so a server that stalls is charged
for the requests it held back, not just the one it stalled (no coordinated omission). At most
``max_in_flight`` requests are out at once: requests due beyond that wait, counted as backlog,
and go out as answers free slots, their latency still from their intended time; those still
waiting when the run ends are counted as skipped.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
from abc import ABC, abstractmethod
from functools import partial
from time import perf_counter as clock
from typing import Any

from ..client import GrpcError
from ..client.status import CODE_NAMES, OK, UNAVAILABLE
from .liveness import Liveness
from .plan import WorkerPlan
from .recorder import Recorder
from .scenario import Context, Scenario, UnaryScenario

# After an UNAVAILABLE answer from a server that still accepts connections, a closed-loop
# client pauses this long, so that dead connections do not spin it into a flood of errors.
UNAVAILABLE_PAUSE = 0.01

# Open loop: event-loop timers fire to the millisecond (libuv's), so a request may go out up to
# SEND_AHEAD before its intended time (its latency then runs from its actual send) rather than
# a timer late (its latency runs from its intended time).
TIMER_RESOLUTION = 0.001
SEND_AHEAD = 0.001


class Driver(ABC):
    """Sends a worker's requests until stopped or its share of --total is sent."""

    def __init__(self, plan: WorkerPlan, scenario: Scenario, ctx: Context, recorder: Recorder,
                 liveness: Liveness):
        self.plan = plan
        self.scenario = scenario
        self.ctx = ctx
        self.recorder = recorder
        self.liveness = liveness
        self.stopping = False
        self._sent = 0  # requests sent (their local index: seq is global, see seq())

    def seq(self, local: int) -> int:
        """Request numbers are unique over the workers, interleaved: 0, 1, ... per run."""
        return local * self.plan.run.procs + self.plan.index

    @abstractmethod
    async def run(self, t0: float) -> None:
        """Sends until stopped or done."""

    def stop(self, at_end: bool = False) -> None:
        """Sends no more (``at_end``: the run's duration is over; an open loop still sends
        what was due before it, as its window allows)."""
        self.stopping = True

    @abstractmethod
    async def drain(self, timeout: float) -> None:
        """Waits up to ``timeout`` for the answers in flight; cancels the rest (CANCELLED)."""


class ClosedLoop(Driver):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._stopped = asyncio.get_running_loop().create_future()
        self._clients: list[asyncio.Task[None]] = []

    async def run(self, t0: float) -> None:
        self._clients = [asyncio.ensure_future(self._client(c)) for c in range(self.plan.clients)]
        everyone = asyncio.gather(*self._clients, return_exceptions=True)
        # until stopped, or every client is done (its share of --total sent and answered)
        await asyncio.wait([self._stopped, everyone], return_when=asyncio.FIRST_COMPLETED)
        self._raise_failure()

    def stop(self, at_end: bool = False) -> None:
        super().stop()
        if not self._stopped.done():
            self._stopped.set_result(None)

    async def drain(self, timeout: float) -> None:
        pending = [t for t in self._clients if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
            await asyncio.wait(pending)
        self._raise_failure()

    def _raise_failure(self) -> None:
        for task in self._clients:
            if task.done() and not task.cancelled() and (e := task.exception()) is not None:
                raise e  # a scenario's bug: the worker fails

    async def _client(self, client: int) -> None:
        try:
            await self._requests(client)
        except BaseException:
            self.stop()  # a scenario's bug (or the drain's cancel): run() raises it
            raise

    async def _requests(self, client: int) -> None:
        request = self.scenario.request
        ctx = self.ctx
        record_ok = self.recorder.ok
        budget = self.plan.total
        while not self.stopping:
            local = self._sent
            if budget is not None and local >= budget:
                return
            self._sent = local + 1
            start = clock()
            ctx.lane = client  # ctx.client() picks the connection as the request is made
            label, answer = request(ctx, self.seq(local))
            try:
                await answer
            except GrpcError as e:
                self.recorder.error(label, e.name)
                if e.code == UNAVAILABLE:
                    await self.liveness.unavailable()
                    await asyncio.sleep(UNAVAILABLE_PAUSE)
                continue
            except asyncio.CancelledError:
                self.recorder.error(label, "CANCELLED")
                raise
            record_ok(label, clock() - start)


class CallLoop(Driver):
    """The closed loop for scenarios whose requests are plain unary calls (Scenario.unary):
    each client is a chain of callbacks on the channel's callback API -- an answer records its
    latency and sends the client's next request -- with no coroutine, task switch or Future
    per request, which is most of what a request costs a Python client."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._finished = loop.create_future()  # all clients done, or stopped
        self._drained: asyncio.Future[None] | None = None
        self._active = 0  # clients still sending
        self._in_flight: dict[str, int] = {}  # label -> requests sent, not answered
        self._closed = False  # drained: answers from now on are not counted
        self._failure: BaseException | None = None
        assert isinstance(self.scenario, UnaryScenario)  # the worker picks this loop for one
        self._unary = self.scenario.unary
        self._budget = self.plan.total if self.plan.total is not None else math.inf
        self._call_timeout = self.ctx.timeout
        # per request: seq() and recorder.ok without their lookups
        self._procs = self.plan.run.procs
        self._index = self.plan.index
        self._record_ok = self.recorder.ok

    async def run(self, t0: float) -> None:
        self._active = self.plan.clients
        for client in range(self.plan.clients):
            self._next(client)
        if self._active:
            await self._finished
        if self._failure is not None:
            raise self._failure

    def stop(self, at_end: bool = False) -> None:
        super().stop()
        self._finish()

    def _finish(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    async def drain(self, timeout: float) -> None:
        if any(self._in_flight.values()):
            self._drained = self._loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained, timeout)
        self._closed = True
        for label, n in self._in_flight.items():
            for _ in range(n):  # never answered: counted as the drain's cancel
                self.recorder.error(label, "CANCELLED")
        if self._failure is not None:
            raise self._failure

    def _next(self, client: int) -> None:
        """Client ``client``'s next request, or its end."""
        local = self._sent
        if self.stopping or local >= self._budget:
            self._active -= 1
            if not self._active:
                self._finish()
            return
        self._sent = local + 1
        ctx = self.ctx
        ctx.lane = client
        try:
            label, channel, path, message = self._unary(ctx, local * self._procs + self._index)
        except Exception as e:  # noqa: BLE001 - a scenario's bug: the worker fails with it
            self._failure = e
            self.stopping = True
            self._active -= 1
            self._finish()
            return
        in_flight = self._in_flight
        in_flight[label] = in_flight.get(label, 0) + 1
        channel.call(path, message, partial(self._answered, client, label, clock()), self._call_timeout)

    def _answered(self, client: int, label: str, start: float, code: int, payload: bytes | str) -> None:
        if self._closed:
            return
        in_flight = self._in_flight
        in_flight[label] -= 1
        if code == OK:
            self._record_ok(label, clock() - start)
        else:
            self.recorder.error(label, CODE_NAMES[code] if 0 <= code < len(CODE_NAMES) else "UNKNOWN")
        if self._drained is not None and not any(in_flight.values()) and not self._drained.done():
            self._drained.set_result(None)
        if code == UNAVAILABLE:
            self.liveness.unavailable()
            self._loop.call_later(UNAVAILABLE_PAUSE, self._next, client)
        else:
            self._next(client)


class OpenLoop(Driver):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.in_flight: set[asyncio.Future[Any]] = set()
        self._wake: asyncio.Future[None] | None = None
        self._waiting_for_slot = False
        self._failure: BaseException | None = None
        self._at_end = False

    async def run(self, t0: float) -> None:
        loop = asyncio.get_running_loop()
        rate = self.plan.rate
        assert rate is not None
        budget = self.plan.total if self.plan.total is not None else math.inf
        cap = self.plan.run.max_in_flight
        recorder = self.recorder
        period = 1.0 / rate
        while not self.stopping and self._failure is None:
            now = clock()
            # request i is due at t0 + i/rate; those due within SEND_AHEAD go now
            due = min(budget, math.floor((now + SEND_AHEAD - t0) * rate) + 1)
            while self._sent < due and len(self.in_flight) < cap:
                self._send(self._sent, t0 + self._sent * period)
            if self._sent < due:  # the window is full
                overdue = min(due, math.floor((now - t0) * rate) + 1) - self._sent
                if overdue > 0:
                    recorder.backlog(int(overdue))
                await self._sleep(loop, None)  # until an answer frees a slot
            elif self._sent >= budget:
                break
            else:
                # timers have a resolution of 1 ms (libuv's): never ask for less
                next_send = t0 + self._sent * period - SEND_AHEAD
                await self._sleep(loop, max(TIMER_RESOLUTION, next_send - clock()))
        if self._failure is not None:
            raise self._failure
        if self.stopping:
            duration = self.plan.run.duration
            elapsed = clock() - t0 if duration is None else min(clock() - t0, duration)
            due = int(min(budget, math.ceil(elapsed * rate)))  # intended before the end
            if self._at_end:  # a timer a little late does not skip requests
                while self._sent < due and len(self.in_flight) < cap:
                    self._send(self._sent, t0 + self._sent * period)
            recorder.skipped += max(0, due - self._sent)  # due, never sent

    def stop(self, at_end: bool = False) -> None:
        super().stop()
        self._at_end = at_end
        self._wakeup()

    async def drain(self, timeout: float) -> None:
        if self.in_flight:
            await asyncio.wait(list(self.in_flight), timeout=timeout)
        for fut in list(self.in_flight):
            fut.cancel()
        if self.in_flight:
            await asyncio.wait(list(self.in_flight))
        if self._failure is not None:
            raise self._failure

    def _send(self, local: int, intended: float) -> None:
        self._sent = local + 1
        self.recorder.sent += 1
        # the latency's start: the intended time if sent late (queued behind a full window or
        # a slow timer: that wait is the server's doing or ours, and counts), the send if early
        start = min(intended, clock())
        label, answer = self.scenario.request(self.ctx, self.seq(local))
        fut = asyncio.ensure_future(answer)
        self.in_flight.add(fut)
        fut.add_done_callback(partial(self._answered, label, start))

    def _answered(self, label: str, start: float, fut: asyncio.Future[Any]) -> None:
        self.in_flight.discard(fut)
        if fut.cancelled():
            self.recorder.error(label, "CANCELLED")
        elif (e := fut.exception()) is None:
            self.recorder.ok(label, clock() - start)
        elif isinstance(e, GrpcError):
            self.recorder.error(label, e.name)
            if e.code == UNAVAILABLE:
                self.liveness.unavailable()
        else:
            self._failure = e  # a scenario's bug: the worker fails
            self._wakeup()
        if self._waiting_for_slot:
            self._wakeup()

    async def _sleep(self, loop: asyncio.AbstractEventLoop, delay: float | None) -> None:
        """Until ``delay`` passes, or (None) until an answer frees a slot; or until stop()."""
        if delay is not None and delay <= 0:
            return
        wake = self._wake = loop.create_future()
        self._waiting_for_slot = delay is None
        timer = loop.call_later(delay, self._wakeup) if delay is not None else None
        try:
            await wake
        finally:
            if timer is not None:
                timer.cancel()
            self._wake = None
            self._waiting_for_slot = False

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
