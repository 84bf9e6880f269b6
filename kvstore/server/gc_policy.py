"""How the server process uses CPython's cyclic garbage collector.

The store keeps its state in long-lived objects and a request makes no reference cycles, so
nearly all the collector's work would be walking live state. Measured under etcd's benchmark
(put, 256 clients): with the default thresholds (700, 10, 10) collections took ~13% of the
server's CPU and full collections paused the loop 20-45 ms each, which was the p99 latency.

* A young-generation threshold of 10,000 allocations lets the objects of requests in flight
  die before a collection sees them, instead of being walked and promoted.
* The state recovered at start-up is moved out of the collector's sight (``gc.freeze``): it is
  freed by reference counting when it goes, and it is what every full collection would walk.
* While it is being built there are no collections at all: every object made then is live, and
  collections triggered by millions of new objects were most of the time to decode a snapshot
  (1M keys: 1.7 s with them, 0.5 s without).
"""
from __future__ import annotations

import gc
from contextlib import contextmanager

YOUNG_THRESHOLD = 10_000


def settle_after_recovery() -> None:
    """Called once the store has recovered, before serving."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@contextmanager
def recovering():
    """No collections while the recovered state is built (then settle_after_recovery)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
