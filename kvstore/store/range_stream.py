"""RangeStream (etcd 3.7, KEP-5966): one range read as a stream of chunks at one revision.

The first read pins the revision (the request's, or the current one); every later chunk reads
at it, starting after the last key sent, so concurrent writes never show and a compaction past
it ends the stream with etcd's "required revision has been compacted". Chunks are sized in keys:
10 first, then doubled while a chunk stays under half of --max-request-bytes and halved when it
goes over twice that, so memory per stream stays near one chunk whatever the range holds. A
chunk is produced only when the caller asks for the next one, after the transport has sent the
previous one within the client's flow-control window.

Only the last chunk has the header, ``count`` and ``more``, which then read as unary Range's:
merging the chunks in order gives Range's response.
"""
from __future__ import annotations

from collections.abc import Iterator

from ..api import rpc_pb2 as pb
from ..mvcc.core import wire
from .ranges import range_end

FIRST_CHUNK_KEYS = 10


def range_chunks(mvcc, r: pb.RangeRequest, chunk_bytes: int, header) -> Iterator[bytes]:
    """Serialized RangeStreamResponses of ``r`` (already validated); ``header(revision)`` makes
    the last one's ResponseHeader bytes."""
    at = mvcc.check_read_rev(r.revision)
    header_rev = mvcc.current_rev
    end = range_end(r.range_end)
    if r.count_only:
        counted = mvcc.range(r.key, end, at, 0, True)
        yield wire.range_stream_response(
            wire.range_response(header(header_rev), [], False, False, counted.count))
        return
    limit = r.limit if r.limit > 0 else 0
    keys_only = r.keys_only
    key = r.key
    want = FIRST_CHUNK_KEYS
    sent = 0
    while True:
        if limit:
            want = min(want, limit - sent)
        mvcc.check_read_rev(at)  # compacted past the pinned revision: the stream ends
        got = mvcc.first(key, end, at, want + 1)  # one extra: is there more?
        more = len(got) > want
        kvs = got[:want]
        sent += len(kvs)
        done = not more or (limit and sent == limit)
        if done:
            count = sent
            if more:  # cut by the client's limit: count what it did not get, as Range does
                count += mvcc.range(kvs[-1].key + b"\0", end, at, 0, True).count
            yield wire.range_stream_response(
                wire.range_response(header(header_rev), kvs, keys_only, more, count))
            return
        chunk = wire.range_response(None, kvs, keys_only, False, 0)
        yield wire.range_stream_response(chunk)
        key = kvs[-1].key + b"\0"
        size = len(chunk)
        if size < chunk_bytes // 2:
            want *= 2
        elif size > chunk_bytes * 2:
            want = max(1, want // 2)
