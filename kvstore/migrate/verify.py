"""``kvstore migrate verify``: both sides compared key by key at one revision.

Each side is read in pages of keys at that revision (Range with a revision, each page from
the last key + b"\\0"), and the pages merged by key: a key on one side only, or with another
value, create revision, mod revision, version or lease, is a difference. Then HashKV at that
revision (etcd's hash of its key bucket, which kvstore computes alike) on both sides: where both
are compacted at the same revision, the hashes cover the same history and must be equal.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

from .. import errors
from ..api import rpc_pb2 as pb
from ..client import GrpcError
from ..store.store import Store

# Keys a page. etcd 3.4 walks its whole index from a page's first key to the range's end for
# every page (its Revisions has no limit), so pages are large: 10,000 keys of 256 B are 3 MB.
PAGE = 10_000
FIELDS = ("value", "create_revision", "mod_revision", "version", "lease")
SHOWN = 20  # differences kept to show; all are counted

RangeCall = Callable[[pb.RangeRequest], Awaitable[pb.RangeResponse]]
HashCall = Callable[[pb.HashKVRequest], Awaitable[pb.HashKVResponse]]


def store_reads(store: Store) -> tuple[RangeCall, HashCall]:
    """Range and HashKV of a store in this process, as the server reads (no caller to check)."""
    async def range_call(r: pb.RangeRequest) -> pb.RangeResponse:
        return store.range_as_server(r)
    return range_call, store.hash_kv


class Comparison(NamedTuple):
    revision: int
    keys: int  # keys seen on either side
    differences: int
    shown: list[str]  # the first SHOWN, one line each
    hashes: str  # what HashKV said on both sides


async def _keys(range_call: RangeCall, revision: int) -> AsyncIterator:
    start = b"\0"
    while True:
        resp = await range_call(pb.RangeRequest(key=start, range_end=b"\0", revision=revision,
                                                limit=PAGE))
        for kv in resp.kvs:
            yield kv
        if not resp.more or not resp.kvs:
            return
        start = resp.kvs[-1].key + b"\0"


async def compare(source: RangeCall, copy: RangeCall, revision: int,
                  source_hash: HashCall, copy_hash: HashCall) -> Comparison:
    """Compares the two sides' keys at ``revision`` (which both must have, uncompacted), then
    their HashKV."""
    shown: list[str] = []
    keys = differences = 0

    def differ(line: str) -> None:
        nonlocal differences
        differences += 1
        if len(shown) < SHOWN:
            shown.append(line)

    a_iter, b_iter = _keys(source, revision), _keys(copy, revision)
    a = await anext(a_iter, None)
    b = await anext(b_iter, None)
    while a is not None or b is not None:
        keys += 1
        if a is not None and (b is None or a.key < b.key):
            differ(f"{a.key!r}: only in the source")
            a = await anext(a_iter, None)
        elif b is not None and (a is None or b.key < a.key):
            differ(f"{b.key!r}: only in the copy")
            b = await anext(b_iter, None)
        elif a is not None and b is not None:
            for name in FIELDS:
                if getattr(a, name) != getattr(b, name):
                    differ(f"{a.key!r}: {name} differs (source {_shown(getattr(a, name))}, "
                           f"copy {_shown(getattr(b, name))})")
                    break
            a = await anext(a_iter, None)
            b = await anext(b_iter, None)
    try:
        h_source = await source_hash(pb.HashKVRequest(revision=revision))
        h_copy = await copy_hash(pb.HashKVRequest(revision=revision))
    except (GrpcError, errors.EtcdError) as e:  # e.g. HashKV refuses the compact revision itself
        return Comparison(revision, keys, differences, shown, f"HashKV at {revision}: not compared ({e})")
    hashes = (f"HashKV at {revision}: source {h_source.hash:08x} (compacted at "
              f"{h_source.compact_revision}), copy {h_copy.hash:08x} (compacted at "
              f"{h_copy.compact_revision})")
    if h_source.compact_revision == h_copy.compact_revision and h_source.hash != h_copy.hash:
        differ(f"HashKV differs at revision {revision}, with the same compaction")
    return Comparison(revision, keys, differences, shown, hashes)


def _shown(value) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes" if len(value) > 40 else repr(value)
    return str(value)
