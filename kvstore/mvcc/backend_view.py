"""The MVCC state as etcd's backend holds it: the ``key`` bucket, one record per revision.

etcd stores every revision of every key under a 17-byte revision key: the main revision
(8 bytes, big-endian), ``_``, the sub-revision (its position among the revision's changes,
8 bytes), plus ``t`` for a tombstone; the value is the marshaled mvccpb.KeyValue (a
tombstone's is only its key). HashKV hashes these records, and a bbolt snapshot is made of them.

kvstore keeps the same revisions in its key indexes and its history. The sub-revision of a
change in the history is its position there. Compaction cuts the history, so what it keeps
of older revisions (each key's newest put at or before the compaction revision) carries
its sub-revision in ``MVCCStore.kept_subs`` when that is not 0 (a Txn of several writes).
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from .core import History, KeyIndex, KeyValue, kept_revisions
from .kvstore import MVCCStore
from .wire import varint

_REVISION = struct.Struct(">Q")
REVISION_KEY = struct.Struct(">QcQ")  # main, "_", sub
KEY_CHUNK = 4096  # key indexes read per step (a pause point in between)
PAUSE = None  # yielded between steps by ``_walk``: the state may change there


class StateChanged(RuntimeError):
    """A compaction ran while the revisions were being read: start again."""


def revision_key(main: int, sub: int, tombstone: bool = False) -> bytes:
    """etcd's revision key: main, ``_``, sub; with ``t`` for a tombstone."""
    key = REVISION_KEY.pack(main, b"_", sub)
    return key + b"t" if tombstone else key


def parse_revision_key(key: bytes) -> tuple[int, int, bool]:
    """(main, sub, tombstone) of a revision key; ValueError if it is not one."""
    if len(key) not in (17, 18) or key[8:9] != b"_" or (len(key) == 18 and key[17:] != b"t"):
        raise ValueError(f"not a revision key: {key.hex()}")
    return _REVISION.unpack_from(key, 0)[0], _REVISION.unpack_from(key, 9)[0], len(key) == 18


def backend_value(kv) -> bytes:
    """The record etcd stores for this revision: the KeyValue, a tombstone as its key only."""
    if kv.version:
        return kv.encoded
    key = kv.key
    return b"\x0a" + varint(len(key)) + key


def backend_revisions(mvcc: MVCCStore, upto: int = 0) -> Iterator[tuple[int, int, KeyValue]]:
    """(main, sub, KeyValue) of every revision etcd's ``key`` bucket would hold for this
    state, up to revision ``upto`` (0: the current one), in (main, sub) order. The state must
    not change while this runs (see ``backend_revisions_in_steps``)."""
    for item in _walk(mvcc, upto or mvcc.current_rev):
        if item is not PAUSE:
            yield item


def backend_revisions_in_steps(mvcc: MVCCStore, upto: int = 0, as_hashed: bool = False) -> Iterator:
    """As ``backend_revisions``, with PAUSE (None) yielded every few thousand records: the
    caller may let other work run there (writes, even a compaction). A compaction since the
    walk began raises StateChanged at the next step, since what it covers is gone.

    ``as_hashed``: the records etcd 3.4's HashKV reads at ``upto``. Of the revisions at or
    before the compaction, it takes only those its index would keep at ``upto`` (each key's
    newest revision by then, if a put); all of them when no key is live at ``upto``.
    """
    return _walk(mvcc, upto or mvcc.current_rev, as_hashed)


def _walk(mvcc: MVCCStore, upto: int, as_hashed: bool = False) -> Iterator:
    for chunk in walk_chunks(mvcc, upto, as_hashed):
        if chunk is PAUSE:
            yield PAUSE
        else:
            yield from chunk


def walk_chunks(mvcc: MVCCStore, upto: int, as_hashed: bool = False) -> Iterator:
    """The records of ``backend_revisions_in_steps`` a list at a time (up to KEY_CHUNK
    records), PAUSE between steps: for consumers that take them by the thousand."""
    upto = upto or mvcc.current_rev
    compact_rev = mvcc.compact_rev
    # What compaction kept: each key's newest revision at or before it, if a put. (Key
    # indexes may still hold older revisions while a compaction goes through them.)
    kept: list[tuple[int, int, KeyValue]] = []
    kept_at_upto: list[tuple[int, int, KeyValue]] = []  # those still the newest at upto
    live_at_upto = False
    if compact_rev > 0:
        start = b""
        while True:
            keys = mvcc.index.keys_from(start, KEY_CHUNK)
            # (One scan over the chunk's key indexes: nothing changes them until the pause.)
            if keys:
                chunk, at_upto, live = kept_revisions(mvcc.index.scan(keys[0], keys[-1] + b"\0"),
                                                      compact_rev, upto, as_hashed, mvcc.kept_subs)
                kept += chunk
                kept_at_upto += at_upto
                live_at_upto = live_at_upto or live
            if len(keys) < KEY_CHUNK:
                break
            start = keys[-1] + b"\0"
            yield PAUSE
            _check_unchanged(mvcc, compact_rev)
        if as_hashed and live_at_upto:
            kept = kept_at_upto
        kept.sort()  # by (main, sub), unique: the KeyValues are never compared
    for i in range(0, len(kept), KEY_CHUNK):
        yield kept[i:i + KEY_CHUNK]
    # Then every revision after the compaction point, from the history, in order.
    history = mvcc.history
    i = history.index_from(compact_rev + 1)
    out: list[tuple[int, int, KeyValue]] = []
    while i < len(history):
        rev, changes = history[i]
        if rev > upto:
            break
        out += [(rev, sub, kv) for sub, kv in enumerate(changes)]
        i += 1
        if len(out) >= KEY_CHUNK:
            yield out
            out = []
            yield PAUSE
            _check_unchanged(mvcc, compact_rev)
    if out:
        yield out


def _check_unchanged(mvcc: MVCCStore, compact_rev: int) -> None:
    if mvcc.compact_rev != compact_rev:
        raise StateChanged(f"compacted at {mvcc.compact_rev} while reading from {compact_rev}")


def mvcc_from_revisions(items: Iterable[tuple[int, int, KeyValue]], current_rev: int,
                        compact_rev: int) -> MVCCStore:
    """The MVCC state whose backend holds these (main, sub, KeyValue) records, given in
    (main, sub) order (an etcd snapshot's ``key`` bucket). Revisions at or before
    ``compact_rev`` are kept as etcd's compaction keeps them: each key's newest, if a put."""
    by_key: dict[bytes, list[KeyValue]] = {}
    history: list[tuple[int, list[KeyValue]]] = []
    kept_subs: dict[tuple[int, bytes], int] = {}
    newest_old: dict[bytes, tuple[int, KeyValue]] = {}  # key -> (sub, kv) at <= compact_rev
    last = (0, -1)
    for main, sub, kv in items:
        if (main, sub) <= last:
            raise ValueError(f"revision {main}_{sub} is out of order (after {last[0]}_{last[1]})")
        last = (main, sub)
        if main <= compact_rev:
            newest_old[kv.key] = (sub, kv)
            continue
        if not history or history[-1][0] != main:
            history.append((main, []))
        history[-1][1].append(kv)
    at_compaction: list[tuple[int, KeyValue]] = []
    for key, (sub, kv) in newest_old.items():
        if kv.version:  # a tombstone at or before the compaction is dropped with its key
            by_key[key] = [kv]
            if sub:
                kept_subs[(kv.mod_revision, key)] = sub
            if kv.mod_revision == compact_rev:
                at_compaction.append((sub, kv))
    if at_compaction:  # the history starts with the puts of the compaction revision
        at_compaction.sort(key=lambda item: item[0])
        history.insert(0, (compact_rev, [kv for _, kv in at_compaction]))
    for main, changes in history:
        if main > compact_rev:  # (the puts at the compaction revision are in by_key already)
            for kv in changes:
                by_key.setdefault(kv.key, []).append(kv)
    store = MVCCStore()
    store.current_rev = max(current_rev, history[-1][0] if history else 0, 1)
    store.compact_rev = compact_rev
    key_indexes = [KeyIndex(key, revs) for key, revs in sorted(by_key.items())]
    store.index.load(key_indexes)
    out = History()
    for main, changes in history:
        out.append(main, tuple(changes))
    store.history = out
    store.kept_subs = kept_subs
    store.size = store.measure_size()
    return store

