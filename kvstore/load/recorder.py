"""What a worker measures, per op label, a second at a time.

The hot path only appends a latency to a list (``ok``) or bumps a counter (``error``); once a
second the worker ``flush``es: the latencies become an HDR histogram, encoded, and the second's
report goes to the coordinator, which merges the workers' reports (results.py). Scenarios
record their own measurements through the same calls (a watch's events, put-to-event latency).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import histogram

# A run's last interval ends when its last answer comes: often a few milliseconds after the
# last whole second, too short for its rate to mean much (shown in the series, not plotted).
MEANINGFUL_INTERVAL = 0.5


@dataclass
class OpSecond:
    """One op label's measurements over one interval of one worker."""

    ok: int = 0  # answered OK (with or without a latency)
    errors: dict[str, int] = field(default_factory=dict)  # gRPC code name -> count
    histogram: str | None = None  # the OK latencies, encoded (histogram.encode); None if none
    latency_sum: float = 0.0  # seconds: the sum of those latencies (for their mean)
    measure: bool = False  # a scenario's own measurement (count or measure), not requests


@dataclass
class SecondReport:
    """A worker's interval: normally one second, the last one shorter (``duration``)."""

    index: int  # 1 for the interval (t0, t0+1], ...
    duration: float
    ops: dict[str, OpSecond]
    skipped: int = 0  # open loop: requests due that were never sent (the run ended first)
    backlog_max: int = 0  # open loop: most requests due but waiting for a free slot
    sent: int = 0  # open loop: requests sent (the load offered, whenever the answers come)


class Recorder:
    def __init__(self) -> None:
        self._latencies: dict[str, list[float]] = {}
        self._counts: dict[str, int] = {}
        self._errors: dict[str, dict[str, int]] = {}
        self._measures: set[str] = set()  # labels of measurements, not of requests
        self.skipped = 0
        self.backlog_max = 0
        self.sent = 0

    def ok(self, label: str, seconds: float) -> None:
        """An OK answer under ``label``, ``seconds`` after it was sent (or due, open loop)."""
        try:
            self._latencies[label].append(seconds)
        except KeyError:
            self._latencies[label] = [seconds]

    def measure(self, label: str, seconds: float) -> None:
        """A latency that is no request's (put-to-event): not counted as a request."""
        self._measures.add(label)
        self.ok(label, seconds)

    def count(self, label: str, n: int = 1) -> None:
        """``n`` things without a latency that are no requests (events delivered in one watch
        response, objects listed)."""
        self._measures.add(label)
        self._counts[label] = self._counts.get(label, 0) + n

    def error(self, label: str, code_name: str) -> None:
        by_code = self._errors.setdefault(label, {})
        by_code[code_name] = by_code.get(code_name, 0) + 1

    def backlog(self, waiting: int) -> None:
        if waiting > self.backlog_max:
            self.backlog_max = waiting

    def flush(self, index: int, duration: float) -> SecondReport:
        """The interval's report; starts the next interval empty."""
        ops: dict[str, OpSecond] = {}
        for label, latencies in self._latencies.items():
            if latencies:
                h = histogram.from_seconds(latencies)
                ops[label] = OpSecond(ok=len(latencies), histogram=histogram.encode(h),
                                      latency_sum=sum(latencies))
        for label, n in self._counts.items():
            ops.setdefault(label, OpSecond()).ok += n
        for label, by_code in self._errors.items():
            ops.setdefault(label, OpSecond()).errors = by_code
        for label, op in ops.items():
            op.measure = label in self._measures
        report = SecondReport(index, duration, ops, self.skipped, self.backlog_max, self.sent)
        self._latencies = {label: [] for label in self._latencies}
        self._counts = {}
        self._errors = {}
        self.skipped = 0
        self.backlog_max = 0
        self.sent = 0
        return report
