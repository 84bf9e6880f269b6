"""kvstore.load.histogram's bulk recording is hdrhistogram's own record_value, value by value."""
from __future__ import annotations

import random

import pytest

import kvstore._ext.latency as compiled_latency
from kvstore.load import histogram

pytestmark = pytest.mark.inprocess


@pytest.mark.parametrize("seed", range(3))
def test_bulk_recording_equals_record_value(seed):
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(7, 2.5)) for _ in range(20_000)] + [0, 1, 2047, 2048, 2049, 10**9]
    one_by_one = histogram.new_histogram()
    for v in values:
        assert one_by_one.record_value(min(max(v, histogram.LOWEST_US), histogram.HIGHEST_US))
    bulk = histogram.from_micros(values)
    assert list(bulk.counts) == list(one_by_one.counts)
    assert (bulk.get_total_count(), bulk.get_min_value(), bulk.get_max_value()) == \
        (one_by_one.get_total_count(), one_by_one.get_min_value(), one_by_one.get_max_value())
    assert histogram.summary_ms(bulk) == histogram.summary_ms(one_by_one)
    assert histogram.decode(histogram.encode(bulk)).get_total_count() == len(values)


def test_nothing_recorded():
    assert histogram.from_micros([]).get_total_count() == 0


@pytest.mark.parametrize("seed", range(3))
def test_from_seconds_is_from_micros_of_whole_microseconds(seed):
    rng = random.Random(seed)
    seconds = [rng.lognormvariate(-7, 2.5) for _ in range(20_000)] + [
        0.0, -1.0, 1e-7, 0.002047, 0.002048, 0.0020489, 59.9999999, 60.0, 61.0, 1e9, 3]
    micros = [min(max(int(s * 1e6), histogram.LOWEST_US), histogram.HIGHEST_US) for s in seconds]
    expected = histogram.from_micros(micros)
    for tally in (compiled_latency.tally, histogram._py_tally):
        h = histogram.new_histogram()
        low, high = tally(seconds, h.counts)
        assert (low, high) == (min(micros), max(micros))
        assert list(h.counts) == list(expected.counts)
    h = histogram.from_seconds(seconds)
    assert list(h.counts) == list(expected.counts)
    assert histogram.encode(h) == histogram.encode(expected)
    assert histogram.from_seconds([]).get_total_count() == 0
    assert compiled_latency.tally([], h.counts) == histogram._py_tally([], h.counts) == (0, 0)
