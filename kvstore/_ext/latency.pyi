# Stub of the compiled module built from ext/latency.pyx. Its pure-Python twin, with the same
# API: tally in kvstore/load/histogram.py.
from typing import Any

def tally(latencies: list[float], counts: Any) -> tuple[int, int]: ...
