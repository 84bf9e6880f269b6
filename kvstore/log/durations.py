"""How long the disk takes: a histogram of durations kept in plain ints, one observation a log
append (a batch of entries), read by /metrics when it is scraped (kvstore/server/metrics.py).

The log's writer thread observes; the event loop reads. Each observation is a few integer
updates under the GIL: a scrape that lands between two of them may see a bucket one ahead of
the sum, never a torn count.
"""
from __future__ import annotations

from bisect import bisect_left

# etcd's buckets for etcd_disk_wal_fsync_duration_seconds and
# etcd_disk_backend_commit_duration_seconds: 1 ms doubling to 8.192 s (14 buckets).
DISK_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
                2.048, 4.096, 8.192)


class DurationHistogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = DISK_BUCKETS):
        self.bounds = bounds  # upper bounds (le) of the buckets, ascending; +Inf after them
        self.counts = [0] * (len(bounds) + 1)  # observations per bucket (not cumulative)
        self.sum = 0.0  # seconds

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        """Prometheus's buckets: (upper bound, observations <= it) ending with "+Inf", which
        is the count; and the sum."""
        total_sum = self.sum
        out = []
        running = 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), list(self.counts)):
            running += n
            out.append((bound, running))
        return out, total_sum
