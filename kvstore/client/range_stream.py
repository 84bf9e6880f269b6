"""A range read as a stream of RangeResponse chunks: KV.RangeStream (etcd 3.7) where the server
has it, else paged Range calls at one revision, which is what RangeStream does server-side.

The fallback keeps RangeStream's rules, so that a request means the same on either server:
key order only and no revision filters (UNIMPLEMENTED with etcd's words, as RangeStream
answers), and a consistent view: every page is read at the first page's revision.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

from ..api import rpc_pb2 as pb
from .connection import Channel
from .status import UNIMPLEMENTED, GrpcError

RANGE_STREAM = b"/etcdserverpb.KV/RangeStream"
RANGE = b"/etcdserverpb.KV/Range"
PAGE_SIZE = 1000  # keys per page of the fallback

# A server that has RangeStream says why it refuses a request in words beginning thus; any
# other UNIMPLEMENTED means it has no such method.
_REFUSAL = "RangeStream "


async def range_stream(channel: Channel, request: pb.RangeRequest,
                       page_size: int = PAGE_SIZE) -> AsyncIterator[pb.RangeResponse]:
    """The chunks of ``request``'s answer: merged (MergeFrom), they make Range's answer (on
    RangeStream; the fallback's pages each carry their own header, count and more)."""
    call = await channel.server_stream(RANGE_STREAM, request.SerializeToString())
    try:
        async for message in call:
            yield pb.RangeStreamResponse.FromString(message).range_response
        return
    except GrpcError as e:
        if e.code != UNIMPLEMENTED or e.message.startswith(_REFUSAL):
            raise
    finally:
        if not call.ended:  # the reader stopped early: the server need send no more
            call.cancel()
    async for page in paged_range(channel, request, page_size):
        yield page


def check_streamable(r: pb.RangeRequest) -> None:
    """What RangeStream refuses, refused alike (kvstore/errors.py has the server's words)."""
    key_order = (r.sort_order == pb.RangeRequest.NONE
                 or (r.sort_order == pb.RangeRequest.ASCEND and r.sort_target == pb.RangeRequest.KEY))
    if not key_order:
        raise GrpcError(UNIMPLEMENTED, "RangeStream does not support custom sort orders")
    if r.min_mod_revision or r.max_mod_revision or r.min_create_revision or r.max_create_revision:
        raise GrpcError(UNIMPLEMENTED, "RangeStream does not support revision filters")


async def paged_range(channel: Channel, request: pb.RangeRequest,
                      page_size: int = PAGE_SIZE) -> AsyncIterator[pb.RangeResponse]:
    """``request`` as Range pages of ``page_size`` keys, each from the last key + b"\\0", all
    at the first page's revision; its ``limit`` counts over all pages."""
    check_streamable(request)
    page = pb.RangeRequest()
    page.CopyFrom(request)
    paged = bool(request.range_end) and not request.count_only  # one key, or a count: one call
    left = request.limit  # 0: no limit
    while True:
        if paged:
            page.limit = page_size if not left else min(page_size, left)
        response = pb.RangeResponse.FromString(
            await channel.unary(RANGE, page.SerializeToString()))
        yield response
        if not paged or not response.more or not response.kvs:
            return
        if left:
            left -= len(response.kvs)
            if left <= 0:
                return
        if not page.revision:  # the view the first page saw (compacted meanwhile: OUT_OF_RANGE)
            page.revision = response.header.revision
        page.key = response.kvs[-1].key + b"\0"
