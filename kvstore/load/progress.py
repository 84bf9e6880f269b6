"""What the coordinator shows while a run goes: a live rich progress bar on a terminal, a
plain line now and then otherwise, or nothing (--quiet)."""
from __future__ import annotations

import sys
from typing import Any

from .plan import RunPlan
from .results import RunResults


def status_line(results: RunResults) -> str:
    """Requests so far, the last second's rate, errors and p99 so far."""
    last = results.last_full_second
    rate = sum(op["rate"] for op in last["ops"].values()) if last else 0.0
    h = results.overall
    p99 = f"{h.get_value_at_percentile(99) / 1000:.2f} ms" if h.get_total_count() else "-"
    return f"{results.ok:,} ok  {rate:,.0f}/s  {results.errors:,} errors  p99 {p99}"


class Progress:
    """Plain lines (not a terminal): after a second of the run is complete, at most one every
    second (every 10 s in runs longer than a minute)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._next = 0.0
        self._shown: object = None

    def begin(self, name: str, plan: RunPlan) -> None:
        self.plan = plan
        self.name = name
        self._next = 0.0
        self._shown = None

    def update(self, results: RunResults, elapsed: float) -> None:
        last = results.last_second
        if self.quiet or last is None or last is self._shown or last["t"] < self._next:
            return
        self._shown = last
        self._next = last["t"] + (1.0 if self.plan.duration is None or self.plan.duration <= 60 else 10.0)
        print(f"[{self.name} {last['t']:5.1f}s] {status_line(results)}", flush=True)

    def end(self) -> None:
        pass


class LiveProgress(Progress):
    """A rich progress bar: of --duration's seconds, or of --total's requests."""

    def begin(self, name: str, plan: RunPlan) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        super().begin(name, plan)
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                             TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                             transient=False)
        total: Any = plan.duration if plan.duration is not None else plan.total
        self._task = self._bar.add_task(name, total=total, status="starting")
        self._bar.start()

    def update(self, results: RunResults, elapsed: float) -> None:
        done = elapsed if self.plan.duration is not None else results.ok + results.errors
        self._bar.update(self._task, completed=done, status=status_line(results))

    def end(self) -> None:
        self._bar.stop()


def progress_for(quiet: bool) -> Progress:
    if not quiet and sys.stdout.isatty():
        return LiveProgress()
    return Progress(quiet)
