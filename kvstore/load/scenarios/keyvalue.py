"""The raw scenarios' common ground: etcd benchmark's key and value knobs, a namespace of our
own (--prefix) cleared before each run, and keys written ahead of the clock when a scenario
reads or deletes them."""
from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ...api import rpc_pb2 as pb
from ..argtypes import non_negative_int, positive_int
from ..keys import KeySpace, prefix_end
from ..scenario import Context, UnaryScenario
from ..waiting import limited

PUT = b"/etcdserverpb.KV/Put"
RANGE = b"/etcdserverpb.KV/Range"
DELETE_RANGE = b"/etcdserverpb.KV/DeleteRange"
TXN = b"/etcdserverpb.KV/Txn"



class KeyValueScenario(UnaryScenario):
    """Keys from ``self.keys`` (a KeySpace), every value ``self.value`` (random bytes, as etcd's
    tool writes); requests are sent pre-serialized on the connection's channel and their
    answers are not parsed (only their gRPC status counts)."""

    preload: bool = False  # write the whole key space in prepare

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        size = options.key_space_size or self.default_key_space_size
        self.keys = KeySpace(options.prefix.encode(), options.key_size, size, options.sequential_keys)
        self.value = os.urandom(options.val_size)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("keys and values (etcd benchmark's flags)")
        g.add_argument("--key-size", type=positive_int, default=8,
                       help="digits of a key's index after --prefix (default 8)")
        g.add_argument("--val-size", type=non_negative_int, default=8, help="value size in bytes (default 8)")
        g.add_argument("--key-space-size", type=positive_int, default=None,
                       help=f"number of distinct keys (default {cls.default_key_space_size})")
        g.add_argument("--sequential-keys", action="store_true",
                       help="use keys in order, not at random")
        g.add_argument("--prefix", default="/kvstore-load/",
                       help="the namespace of the run's keys, cleared before the run "
                            "(default /kvstore-load/)")
        g.add_argument("--keep-prefix", action="store_true",
                       help="do not clear --prefix before the run")

    async def prepare(self, ctx: Context) -> None:
        if not self.options.keep_prefix:
            await clear_prefix(ctx, self.keys.prefix)
        if self.preload:
            await put_all(ctx, self.keys.all(), self.value)


class KeyedTemplate:
    """A request's serialized form around its key. Every key of a KeySpace has the same length
    and protobuf writes fields in number order, so only the key's bytes change from request
    to request: joining three byte strings is several times cheaper than building and
    serializing a message each time (the request is a worker's hot path)."""

    def __init__(self, message: Any, keys: KeySpace):
        sample = keys.key(0)
        message.key = sample
        data = message.SerializeToString()
        at = data.index(sample)  # the key is field 1: after its tag and length, before the rest
        self._head, self._tail = data[:at], data[at + len(sample):]
        message.key = keys.key(keys.size - 1)
        if self.render(message.key) != message.SerializeToString():
            raise RuntimeError(f"{type(message).__name__} does not serialize its key first")

    def render(self, key: bytes) -> bytes:
        return b"".join((self._head, key, self._tail))


async def clear_prefix(ctx: Context, prefix: bytes) -> None:
    """On every endpoint: the same cluster's members (a no-op after the first), or not."""
    request = pb.DeleteRangeRequest(key=prefix, range_end=prefix_end(prefix))
    for endpoint in ctx.endpoints:
        await ctx.clients_of(endpoint)[0].delete_range(request, timeout=ctx.timeout)


async def put_all(ctx: Context, keys: Iterable[bytes], value: bytes) -> None:
    """Writes every key, a bounded number at a time (waiting.limited) over all the connections."""
    def put(i: int, key: bytes) -> Callable[[], Awaitable[bytes]]:
        message = pb.PutRequest(key=key, value=value).SerializeToString()
        return lambda: ctx.client(i).channel.unary(PUT, message, ctx.timeout)

    await limited(put(i, key) for i, key in enumerate(keys))
