"""The Kubernetes-shaped scenarios: kube-leases, kube-pods, kube-events, kube-list and
kube-mixed (kvstore.load.kube has the traffic itself).

A scenario is a mix of streams at fixed proportions (kvstore.load.mix.WeightedMix), each
worker running the whole mix on its own share of the objects. Given kube-apiserver's
--etcd-servers-overrides (or the flags file ``kvstore serve --profile kube`` writes), each
stream's requests go to its resource's endpoint.
"""
from __future__ import annotations

import argparse
from abc import abstractmethod
from typing import ClassVar

from ..argtypes import positive_float, positive_int
from ..kube.events import EventCreates
from ..kube.layout import DEFAULT_SIZES, EVENTS, LEASES, POD_PREFIX, PODS, initial_pod_key, object_value
from ..kube.leases import LeaseRenewals
from ..kube.pods import PodChurn, create_pods
from ..kube.reads import PodCounts, PodGets, PodListPages, PodLists
from ..kube.routing import Routing, parse_overrides, read_flags_file
from ..kube.stream import KubeStream
from ..kube.wire import ld
from ..mix import WeightedMix
from ..scenario import Context, Outcome, Scenario

RENEW_INTERVAL_S = 10.0  # kubelet renews its node's Lease every 10 s

# kube-mixed at --scale 1: the EKS 100k-node cluster's peak, ~7,500 reads/s and 8,000-9,000
# writes/s (../shared/design/BRIEF.md), split over kube's traffic (kube-traffic.md) thus:
MIXED_RATES = {
    "lease-renew": 6000.0,  # node heartbeats: 60,000 nodes, one renewal each every 10 s
    "pod-write": 1500.0,  # pod create/update/delete
    "event-create": 1000.0,  # events, with leases
    "get": 7000.0,  # GETs of one object
    "count": 450.0,  # object counts
    "list-page": 50.0,  # pages of LISTs, 500 objects each
}
MIXED_PODS = 5000  # pods written before the clock at --scale 1


def add_kube_arguments(parser: argparse.ArgumentParser, *, pods: int | None = None,
                       nodes: int | None = None, lists: bool = False) -> None:
    g = parser.add_argument_group("Kubernetes shape")
    g.add_argument("--etcd-servers-overrides", default="", metavar="OVERRIDES",
                   help="kube-apiserver's flag: group/resource#URL,... sends each resource to "
                        "its partition (the rest go to --endpoints)")
    g.add_argument("--kube-apiserver-flags", default=None, metavar="FILE",
                   help="the kube-apiserver.flags file `kvstore serve --profile kube` writes: "
                        "--etcd-servers and the overrides from it")
    g.add_argument("--lease-size", type=positive_int, default=DEFAULT_SIZES[LEASES],
                   help=f"bytes of a node Lease (default {DEFAULT_SIZES[LEASES]})")
    g.add_argument("--pod-size", type=positive_int, default=DEFAULT_SIZES[PODS],
                   help=f"bytes of a Pod (default {DEFAULT_SIZES[PODS]})")
    g.add_argument("--event-size", type=positive_int, default=DEFAULT_SIZES[EVENTS],
                   help=f"bytes of an Event (default {DEFAULT_SIZES[EVENTS]})")
    g.add_argument("--event-ttl", type=positive_int, default=3600,
                   help="seconds: the TTL of the events' leases (default 3600, kube's)")
    if nodes is not None:
        g.add_argument("--nodes", type=positive_int, default=nodes,
                       help=f"nodes renewing their Lease every 10 s (default {nodes})")
    if pods is not None:
        g.add_argument("--pods", type=positive_int, default=pods,
                       help=f"pods written before the clock (default {pods})")
    if lists:
        g.add_argument("--page-size", type=positive_int, default=500,
                       help="objects a LIST page (default 500, kube's)")
        g.add_argument("--stream", action="store_true",
                       help="LIST with RangeStream (paged Range where the server has none)")


def routing_of(options: argparse.Namespace) -> Routing:
    overrides = parse_overrides(options.etcd_servers_overrides)
    servers: list[str] = []
    if options.kube_apiserver_flags:
        servers, from_file = read_flags_file(options.kube_apiserver_flags)
        overrides = {**from_file, **overrides}
    return Routing(overrides, servers)


class KubeScenario(Scenario):
    """Streams in fixed proportions: ``streams()`` gives each with its rate (per second, or
    its weight in a closed loop)."""

    default_rate_per_s: ClassVar[bool] = False  # whether the rates are the natural open loop

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.routing = routing_of(options)
        streams = self.streams()
        self.by_name = {name: stream for name, (stream, _) in streams.items()}
        self.mix = WeightedMix({name: rate for name, (_, rate) in streams.items()})
        self._sent = 0

    @abstractmethod
    def streams(self) -> dict[str, tuple[KubeStream, float]]:
        """Each stream by name, with its rate (per second, or its weight in a closed loop)."""

    def endpoints(self, given: list[str]) -> list[str]:
        return self.routing.run_endpoints(given)

    def default_rate(self) -> float | None:
        return self.mix.total_rate if self.default_rate_per_s else None

    async def prepare(self, ctx: Context) -> None:
        for stream in self.by_name.values():
            await stream.prepare(ctx)

    async def start(self, ctx: Context) -> None:
        for stream in self.by_name.values():
            await stream.start(ctx)

    def request(self, ctx: Context, seq: int) -> Outcome:
        # the worker's own count, not seq (interleaved over the workers): every worker runs
        # the whole mix
        n = self._sent
        self._sent = n + 1
        return self.by_name[self.mix.label(n)].request(ctx)

    async def settle(self, ctx: Context) -> None:
        for stream in self.by_name.values():
            await stream.settle(ctx)

    async def stop(self, ctx: Context) -> None:
        for stream in self.by_name.values():
            await stream.stop(ctx)


class KubeLeases(KubeScenario):
    name = "kube-leases"
    help = "node heartbeats: every node renews its Lease every 10 s (GuaranteedUpdate Txn)"
    default_rate_per_s = True

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_kube_arguments(parser, nodes=1000)

    def streams(self) -> dict[str, tuple[KubeStream, float]]:
        nodes = self.options.nodes
        return {"lease-renew": (LeaseRenewals(self.options, self.routing, nodes), nodes / RENEW_INTERVAL_S)}


class KubePods(KubeScenario):
    name = "kube-pods"
    help = "pod create/update/delete Txns on ~4 KB pods, with a watch on /registry/pods/"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_kube_arguments(parser, pods=100)
        parser.add_argument("--no-watch", action="store_true", help="no watch on the pods")

    def streams(self) -> dict[str, tuple[KubeStream, float]]:
        churn = PodChurn(self.options, self.routing, self.options.pods, watch=not self.options.no_watch)
        return {"pod-write": (churn, 1.0)}


class KubeEvents(KubeScenario):
    name = "kube-events"
    help = "events created with TTL leases (one lease per 60 s or 1,000 events)"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_kube_arguments(parser)

    def streams(self) -> dict[str, tuple[KubeStream, float]]:
        return {"event-create": (EventCreates(self.options, self.routing), 1.0)}


class _ListedPods(PodLists):
    """The LISTs' pods, written before the clock."""

    async def prepare(self, ctx: Context) -> None:
        await super().prepare(ctx)
        await self.clear(ctx, POD_PREFIX)
        value = ld(0x12, object_value(self.options.pod_size, 2))
        await create_pods(ctx, self, [initial_pod_key(i) for i in range(self.options.pods)], value)


class KubeList(KubeScenario):
    name = "kube-list"
    help = "whole LISTs of the pods: paged Range (limit 500), or RangeStream with --stream"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_kube_arguments(parser, pods=2000, lists=True)

    def streams(self) -> dict[str, tuple[KubeStream, float]]:
        return {"list": (_ListedPods(self.options, self.routing), 1.0)}


class KubeMixed(KubeScenario):
    name = "kube-mixed"
    help = ("the EKS 100k-node profile: ~7.5k reads/s and ~8.5k writes/s at --scale 1 (leases, "
            "pods, events, GETs, counts, LIST pages), open loop")
    default_rate_per_s = True

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_kube_arguments(parser, lists=True)
        parser.add_argument("--scale", type=positive_float, default=0.1,
                            help="the profile's rates times this (default 0.1; 1 is the full "
                                 "profile, ~16k requests/s)")

    def streams(self) -> dict[str, tuple[KubeStream, float]]:
        o, r, scale = self.options, self.routing, self.options.scale
        rates = {name: rate * scale for name, rate in MIXED_RATES.items()}
        pods = max(100, round(MIXED_PODS * scale))
        nodes = max(1, round(rates["lease-renew"] * RENEW_INTERVAL_S))
        return {"lease-renew": (LeaseRenewals(o, r, nodes), rates["lease-renew"]),
                "pod-write": (PodChurn(o, r, pods, watch=True), rates["pod-write"]),
                "event-create": (EventCreates(o, r), rates["event-create"]),
                "get": (PodGets(o, r, pods), rates["get"]),
                "count": (PodCounts(o, r), rates["count"]),
                "list-page": (PodListPages(o, r, pods), rates["list-page"])}
