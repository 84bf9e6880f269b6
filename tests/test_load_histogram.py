"""kvstore.load.histogram's bulk recording is hdrhistogram's own record_value, value by value."""
from __future__ import annotations

import random

import pytest

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
