"""HDR latency histograms (hdrhistogram's HdrHistogram), in microseconds from 1 µs to 60 s.

Workers tally latencies cheaply and build one histogram a second (``from_seconds``); the
coordinator merges the encoded histograms and reads percentiles in milliseconds.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from .. import _ext

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3
SIGNIFICANT_BITS = 11  # 3 significant figures: 2,048 sub-buckets (2**11 > 2 * 10**3)

# The percentiles every summary carries, by their name in the JSON and the tables.
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def from_micros(latencies_us: Iterable[int]) -> HdrHistogram:
    """A histogram of latencies in µs; values outside 1 µs..60 s are clamped into it (a value
    hdrhistogram cannot hold would be dropped without a word).

    hdrhistogram's record_value costs microseconds a value in pure Python, a worker records
    tens of thousands a second: the values' bucket indexes are computed here in one pass (the
    formula of HdrHistogram._counts_index_for for 1 µs units and 3 significant figures) and
    added to the counts in bulk. tests/test_load_histogram.py holds it to record_value."""
    values = list(latencies_us)
    h = new_histogram()
    if not values:
        return h
    low, high = min(values), max(values)
    if low < LOWEST_US or high > HIGHEST_US:
        values = [min(max(v, LOWEST_US), HIGHEST_US) for v in values]
        low, high = min(values), max(values)
    _add_counts(values, h.counts)
    return _with_extremes(h, len(values), low, high)


def from_seconds(latencies: list[float]) -> HdrHistogram:
    """from_micros of the latencies' whole microseconds (``int(s * 1e6)``), bucketed by
    ``tally``: compiled (ext/latency.pyx) unless KVSTORE_NO_EXT=1."""
    h = new_histogram()
    if not latencies:
        return h
    low, high = tally(latencies, h.counts)
    return _with_extremes(h, len(latencies), low, high)


def _py_tally(latencies: list[float], counts: Any) -> tuple[int, int]:
    """Adds each latency (seconds) to ``counts`` at the bucket of its whole microseconds,
    clamped into 1 µs..60 s; returns the lowest and highest of those (0, 0 for none)."""
    if not latencies:
        return 0, 0
    values = [min(max(int(s * 1e6), LOWEST_US), HIGHEST_US) for s in latencies]
    _add_counts(values, counts)
    return min(values), max(values)


def _add_counts(values: list[int], counts: Any) -> None:
    sub_buckets = 1 << SIGNIFICANT_BITS  # 2,048: below it a value is its own index
    half = SIGNIFICANT_BITS - 1
    indexes = Counter([v if v < sub_buckets else
                       ((b := v.bit_length() - SIGNIFICANT_BITS) + 1 << half) + (v >> b) - (1 << half)
                       for v in values])
    for index, n in indexes.items():
        counts[index] += n


def _with_extremes(h: HdrHistogram, total: int, low: int, high: int) -> HdrHistogram:
    h.total_count = total
    h.record_value(low, 0)  # the extremes, as record_value keeps them
    h.record_value(high, 0)
    return h


_c = _ext.compiled("latency")
if TYPE_CHECKING:
    from .._ext.latency import tally
elif _c is not None:
    tally = _c.tally
else:
    tally = _py_tally


def encode(h: HdrHistogram) -> str:
    """hdrhistogram's compressed base64 form (what HdrHistogram.decode reads back)."""
    return h.encode().decode("ascii")


def decode(text: str | bytes) -> HdrHistogram:
    h = new_histogram()
    h.decode_and_add(text)
    return h


def summary_ms(h: HdrHistogram) -> dict[str, float]:
    """p50, p90, p99, p99.9, max and min in milliseconds (empty if nothing recorded). Not the
    mean: hdrhistogram walks every bucket for it (~0.1 s); the recorder sums latencies."""
    if h.get_total_count() == 0:
        return {}
    out = {name: h.get_value_at_percentile(p) / 1000 for name, p in PERCENTILES}
    out["max"] = h.get_max_value() / 1000
    out["min"] = h.get_min_value() / 1000
    return out


def percentile_curve_ms(h: HdrHistogram, ticks_per_half: int = 5) -> list[tuple[float, float]]:
    """(percentile, latency ms) points for a latency-by-percentile plot, denser toward 100 as
    HdrHistogram's percentile distribution is."""
    if h.get_total_count() == 0:
        return []
    return [(it.percentile_level_iterated_to, it.value_iterated_to / 1000)
            for it in h.get_percentile_iterator(ticks_per_half)]
