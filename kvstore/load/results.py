"""The coordinator's side of the measurements: the workers' seconds merged into one run's
results, then its JSON form (the run's entry in results.json; see docs/load.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hdrh.histogram import HdrHistogram

from . import histogram
from .plan import RunPlan
from .recorder import MEANINGFUL_INTERVAL, OpSecond, SecondReport
from .worker import WorkerDone


@dataclass
class OpTotals:
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    histogram: HdrHistogram = field(default_factory=histogram.new_histogram)
    latency_sum: float = 0.0
    measure: bool = False  # a scenario's measurement, not requests (Recorder.count, .measure)

    def add(self, op: OpSecond) -> None:
        self.measure = self.measure or op.measure
        self.ok += op.ok
        self.latency_sum += op.latency_sum
        for code, n in op.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        if op.histogram is not None:
            self.histogram.decode_and_add(op.histogram)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass
class _Second:
    """One second being merged until every worker has reported it."""

    duration: float = 0.0
    ops: dict[str, OpTotals] = field(default_factory=dict)
    skipped: int = 0
    backlog_max: int = 0
    sent: int = 0


class RunResults:
    def __init__(self, name: str, plan: RunPlan):
        self.name = name
        self.plan = plan
        self.started: str | None = None  # wall-clock time of t0, ISO 8601
        self.server_versions: dict[str, str] = {}
        self.ops: dict[str, OpTotals] = {}
        self.overall = histogram.new_histogram()  # every op's latencies: the progress line's p99
        self.series: list[dict[str, Any]] = []
        self.skipped = 0
        self.backlog_max = 0
        self.workers: dict[int, WorkerDone] = {}
        self.coordinator_cpu_seconds = 0.0
        self.ended = "completed"  # "completed", "lost", "failed" or "interrupted"
        self.message: str | None = None  # why it ended early
        self.lost: tuple[str, float] | None = None  # (endpoint, seconds after t0)
        self.last_second: dict[str, Any] | None = None  # the newest finished second
        self.last_full_second: dict[str, Any] | None = None  # the newest not cut short
        self._open: dict[int, _Second] = {}
        self._reported: dict[int, int] = dict.fromkeys(range(plan.procs), 0)

    def start(self) -> None:
        self.started = datetime.now(UTC).isoformat(timespec="milliseconds")

    # --- merging --------------------------------------------------------------------------

    def add_second(self, worker: int, report: SecondReport) -> None:
        second = self._open.setdefault(report.index, _Second())
        second.duration = max(second.duration, report.duration)
        second.skipped += report.skipped
        second.backlog_max += report.backlog_max
        second.sent += report.sent
        for label, op in report.ops.items():
            second.ops.setdefault(label, OpTotals()).add(op)
            self.ops.setdefault(label, OpTotals()).add(op)
            if op.histogram is not None:
                self.overall.decode_and_add(op.histogram)
        self.skipped += report.skipped
        self._reported[worker] = max(self._reported[worker], report.index)
        self._finish_seconds()

    def worker_done(self, worker: int, done: WorkerDone) -> None:
        self.workers[worker] = done
        self._finish_seconds()

    def close(self) -> None:
        """No more reports: the seconds still open are as complete as they will be."""
        self._finish_seconds(everything=True)

    def _finish_seconds(self, everything: bool = False) -> None:
        # a second is complete once every worker still running has reported it
        running = [last for w, last in self._reported.items() if w not in self.workers]
        complete = min(running) if running and not everything else max(self._open, default=0)
        for index in sorted(i for i in self._open if i <= complete):
            self._finish(index, self._open.pop(index))

    def _finish(self, index: int, second: _Second) -> None:
        if second.duration <= 0:
            return
        ops = {}
        for label, op in sorted(second.ops.items()):
            entry: dict[str, Any] = {"ok": op.ok, "errors": op.error_count,
                                     "rate": round(op.ok / second.duration, 1)}
            entry.update(histogram.summary_ms(op.histogram))
            ops[label] = entry
        self.backlog_max = max(self.backlog_max, second.backlog_max)
        self.last_second = {"t": round(index - 1 + second.duration, 3),
                            "duration": round(second.duration, 3), "ops": ops,
                            "skipped": second.skipped, "backlog_max": second.backlog_max,
                            "sent": second.sent}
        self.series.append(self.last_second)
        if second.duration >= MEANINGFUL_INTERVAL:
            self.last_full_second = self.last_second

    # --- reading --------------------------------------------------------------------------

    @property
    def ok(self) -> int:
        """Requests answered OK (not what scenarios count beside them: events, objects)."""
        return sum(op.ok for op in self.ops.values() if not op.measure)

    @property
    def errors(self) -> int:
        return sum(op.error_count for op in self.ops.values())

    @property
    def elapsed(self) -> float:
        """From t0 to the last worker's end (its last answer, or the drain's)."""
        return max((d.elapsed for d in self.workers.values()), default=0.0)

    @property
    def worker_cpu_seconds(self) -> float:
        return sum(d.cpu_seconds for d in self.workers.values())

    def to_json(self) -> dict[str, Any]:
        elapsed = self.elapsed
        plan = self.plan
        ops = {}
        for label, op in sorted(self.ops.items()):
            latency = histogram.summary_ms(op.histogram)
            if latency:
                latency["mean"] = round(op.latency_sum * 1000 / op.histogram.get_total_count(), 3)
            ops[label] = {
                "kind": "measure" if op.measure else "request",
                "ok": op.ok, "errors": dict(sorted(op.errors.items())), "error_count": op.error_count,
                "rate": round(op.ok / elapsed, 1) if elapsed > 0 else 0.0,
                "latency_ms": latency,
                "histogram": histogram.encode(op.histogram),
            }
        cpu = self.worker_cpu_seconds + self.coordinator_cpu_seconds
        return {
            "name": self.name,
            "endpoints": plan.endpoints,
            "server_versions": self.server_versions,
            "started": self.started,
            "ended": self.ended,
            "message": self.message,
            "lost": None if self.lost is None else {"endpoint": self.lost[0], "t": round(self.lost[1], 3)},
            "loop": "open" if plan.open_loop else "closed",
            "rate": plan.rate, "procs": plan.procs, "clients": plan.clients, "conns": plan.conns,
            "elapsed_s": round(elapsed, 3),
            "ops": ops,
            "skipped": self.skipped,
            "backlog_max": self.backlog_max,
            "cpu_seconds": {"workers": round(self.worker_cpu_seconds, 3),
                            "coordinator": round(self.coordinator_cpu_seconds, 3),
                            "total": round(cpu, 3)},
            "ok_per_cpu_second": round(self.ok / cpu, 1) if cpu > 0 else None,
            "series": self.series,
        }
