"""kube-apiserver's reads of pods: GETs of one object, object counts, LIST pages, and whole
LISTs (paged, or RangeStream where the server has it)."""
from __future__ import annotations

import argparse
import random

from ...api import rpc_pb2 as pb
from ..keys import prefix_end
from ..scenario import Context, Outcome
from .layout import POD_PREFIX, PODS, initial_pod_key
from .routing import Routing
from .stream import RANGE, KubeStream

POD_END = prefix_end(POD_PREFIX)


class PodGets(KubeStream):
    """GET of one pod: Range(key, limit=1), linearizable, over the pods written before the
    clock."""

    label = "get"
    resource = PODS

    def __init__(self, options: argparse.Namespace, routing: Routing, pods: int):
        super().__init__(options, routing)
        self.pods = pods

    def request(self, ctx: Context) -> Outcome:
        key = initial_pod_key(random.randrange(self.pods))
        message = pb.RangeRequest(key=key, limit=1).SerializeToString()
        return self.label, self.channel().unary(RANGE, message, ctx.timeout)


class PodCounts(KubeStream):
    """The object count kube-apiserver takes every minute: Range(prefix, count_only)."""

    label = "count"
    resource = PODS
    MESSAGE = pb.RangeRequest(key=POD_PREFIX, range_end=POD_END, count_only=True).SerializeToString()

    def request(self, ctx: Context) -> Outcome:
        return self.label, self.channel().unary(RANGE, self.MESSAGE, ctx.timeout)


class PodListPages(KubeStream):
    """One page of a paged LIST: Range(from a pod on, to the prefix's end, limit)."""

    label = "list-page"
    resource = PODS

    def __init__(self, options: argparse.Namespace, routing: Routing, pods: int):
        super().__init__(options, routing)
        self.pods = pods

    def request(self, ctx: Context) -> Outcome:
        start = initial_pod_key(random.randrange(self.pods))
        message = pb.RangeRequest(key=start, range_end=POD_END, limit=self.options.page_size)
        return self.label, self.channel().unary(RANGE, message.SerializeToString(), ctx.timeout)


class PodLists(KubeStream):
    """A whole LIST of the pods, as kube-apiserver's reflector or consistency checker runs it:
    pages of --page-size, the revision pinned by the first, each next page from the last key
    + "\\0"; or with --stream, one RangeStream (paged Range where the server has none)."""

    label = "list"
    resource = PODS

    def request(self, ctx: Context) -> Outcome:
        if self.options.stream:
            return self.label, self._streamed(ctx)
        return self.label, self._paged(ctx)

    async def _paged(self, ctx: Context) -> None:
        channel = self.channel()
        request = pb.RangeRequest(key=POD_PREFIX, range_end=POD_END, limit=self.options.page_size)
        objects = 0
        while True:
            answer = await channel.unary(RANGE, request.SerializeToString(), ctx.timeout)
            r = pb.RangeResponse.FromString(answer)
            objects += len(r.kvs)
            if not r.more or not r.kvs:
                break
            request.key = r.kvs[-1].key + b"\x00"
            request.revision = r.header.revision
        ctx.recorder.count("list-objects", objects)

    async def _streamed(self, ctx: Context) -> None:
        objects = 0
        async for chunk in self.client().range_stream(pb.RangeRequest(key=POD_PREFIX, range_end=POD_END),
                                                     page_size=self.options.page_size):
            objects += len(chunk.kvs)
        ctx.recorder.count("list-objects", objects)
