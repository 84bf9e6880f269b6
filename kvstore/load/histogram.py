"""HDR latency histograms (hdrhistogram's HdrHistogram), in microseconds from 1 µs to 60 s.

Workers tally latencies cheaply and build one histogram a second (``from_micros``); the
coordinator merges the encoded histograms and reads percentiles in milliseconds.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

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
    sub_buckets = 1 << SIGNIFICANT_BITS  # 2,048: below it a value is its own index
    half = SIGNIFICANT_BITS - 1
    indexes = Counter([v if v < sub_buckets else
                       ((b := v.bit_length() - SIGNIFICANT_BITS) + 1 << half) + (v >> b) - (1 << half)
                       for v in values])
    counts = h.counts
    for index, n in indexes.items():
        counts[index] += n
    h.total_count = len(values)
    h.record_value(low, 0)  # the extremes, as record_value keeps them
    h.record_value(high, 0)
    return h


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
