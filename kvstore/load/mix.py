"""Several request kinds at fixed rates in one stream of requests."""
from __future__ import annotations

from math import gcd


class WeightedMix:
    """Maps a request's seq to one of several labels in proportion to their rates, spread
    evenly (smooth weighted round robin, as nginx balances): {"lease": 10000, "pod": 1000,
    "event": 500} gives a cycle of 23 with 20 leases, 2 pods and 1 event, the pods and the
    event spaced out among the leases. ``total_rate`` is the rate to run the mix at."""

    def __init__(self, rates: dict[str, float]):
        if not rates or any(r <= 0 for r in rates.values()):
            raise ValueError("a mix needs positive rates")
        # integer weights: rates rounded to whole requests/s (a kind rarer than 1/s still gets
        # 1), reduced by their common divisor
        weights = {label: max(1, round(r)) for label, r in rates.items()}
        common = 0
        for w in weights.values():
            common = gcd(common, w)
        weights = {label: w // common for label, w in weights.items()}
        self.total_rate = sum(rates.values())
        self.cycle = self._smooth_cycle(weights)

    @staticmethod
    def _smooth_cycle(weights: dict[str, int]) -> list[str]:
        total = sum(weights.values())
        current = dict.fromkeys(weights, 0)
        cycle = []
        for _ in range(total):
            for label, w in weights.items():
                current[label] += w
            chosen = max(current, key=current.__getitem__)
            current[chosen] -= total
            cycle.append(chosen)
        return cycle

    def label(self, seq: int) -> str:
        return self.cycle[seq % len(self.cycle)]
