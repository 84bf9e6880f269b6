"""The scenarios ``kvstore load`` knows, by name. A new one: a Scenario subclass
(kvstore.load.scenario) in a module here, added to SCENARIOS."""
from __future__ import annotations

from ..scenario import Scenario
from .delete import Delete
from .kube import KubeEvents, KubeLeases, KubeList, KubeMixed, KubePods
from .lease_keepalive import LeaseKeepAlive
from .put import Put
from .range import Range
from .txn_put import TxnPut
from .watch import Watch
from .watch_latency import WatchLatency

SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (Put, Range, TxnPut, Delete, Watch, WatchLatency,
                                                             LeaseKeepAlive, KubeLeases, KubePods,
                                                             KubeEvents, KubeList, KubeMixed)}

__all__ = ["SCENARIOS"]
