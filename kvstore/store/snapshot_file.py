"""The snapshot file's layout, and the checks that make a damaged file refuse to load.

    keys | history | envelope | u32 envelope length | u32 CRC-32 of the envelope | magic

``keys`` and ``history`` are the MVCC state's flat records (kvstore/mvcc/state_codec.py). The
envelope (msgpack) holds the log index, the revisions, the leases, the leader and its term, the
number of keys, and each section's length and CRC-32. It comes last because the keys' length
and checksum are known only once they are encoded: the parts are written as they are made.

Every byte is covered: the trailer's magic and the envelope's checksum first, then each
section's. A file that is short, long, or has one bit flipped anywhere is refused with what is
wrong with it, never loaded.
"""
from __future__ import annotations

import mmap
import struct
import zlib
from typing import Any, NamedTuple

import msgpack

# What a snapshot file's bytes may come as: read, or mapped (DirStorage.open_snapshot).
Buffer = bytes | memoryview | mmap.mmap

MAGIC = b"KVSNAP\x00\x05"  # the file layout's version is its last byte
_TRAILER = struct.Struct("<II8s")


class SnapshotCorrupt(ValueError):
    """The bytes are not a whole, intact snapshot file."""


class Sections(NamedTuple):
    """The sections are views of the file's bytes (no copies): whoever reads the file
    releases them when done (a mapped file can only be unmapped then)."""
    envelope: dict[str, Any]
    keys: memoryview
    history: memoryview

    def release(self) -> None:
        self.keys.release()
        self.history.release()


class KeysChecksum:
    """The keys section's length and CRC-32, kept up as its parts are made."""

    __slots__ = ("length", "crc")

    def __init__(self) -> None:
        self.length = 0
        self.crc = 0

    def add(self, part: bytes) -> None:
        self.length += len(part)
        self.crc = zlib.crc32(part, self.crc)


def tail(fields: dict[str, Any], keys: KeysChecksum, history: bytes, key_count: int) -> bytes:
    """The envelope and trailer that end a file whose sections were ``keys`` and ``history``."""
    envelope = msgpack.packb({**fields, "keys_len": keys.length, "keys_crc": keys.crc,
                              "history_len": len(history), "history_crc": zlib.crc32(history),
                              "key_count": key_count})
    return envelope + _TRAILER.pack(len(envelope), zlib.crc32(envelope), MAGIC)


def read_envelope(data: Buffer) -> tuple[dict[str, Any], int]:
    """The envelope, and where it starts; checks everything but the sections' checksums."""
    if len(data) < _TRAILER.size:
        raise SnapshotCorrupt(f"truncated: {len(data)} bytes, shorter than the trailer")
    n, crc, magic = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    if magic != MAGIC:
        if magic[:6] == MAGIC[:6]:
            raise SnapshotCorrupt(f"layout version {magic[7]} is not {MAGIC[7]}")
        raise SnapshotCorrupt("no snapshot trailer at the end (truncated, or not a kvstore "
                              "snapshot of this version)")
    start = len(data) - _TRAILER.size - n
    if start < 0:
        raise SnapshotCorrupt("truncated: the envelope's length exceeds the file")
    raw = data[start:start + n]
    if zlib.crc32(raw) != crc:
        raise SnapshotCorrupt("the envelope fails its checksum")
    try:
        env = msgpack.unpackb(raw, raw=False)
        keys_len, history_len, _, _ = (env[name] for name in (
            "keys_len", "history_len", "keys_crc", "history_crc"))
    except (ValueError, KeyError, TypeError, msgpack.UnpackException):
        raise SnapshotCorrupt("unreadable envelope") from None
    if keys_len + history_len != start:
        raise SnapshotCorrupt(f"the sections take {start} bytes, the envelope says "
                              f"{keys_len + history_len}")
    return env, start


def sections(data: Buffer) -> Sections:
    """The envelope and both sections (views of ``data``) of an intact file; raises
    SnapshotCorrupt otherwise."""
    env, _ = read_envelope(data)
    keys_len = env["keys_len"]
    with memoryview(data) as whole:
        found = Sections(env, whole[:keys_len], whole[keys_len:keys_len + env["history_len"]])
    for section, name, crc in ((found.keys, "key", env["keys_crc"]),
                               (found.history, "history", env["history_crc"])):
        if zlib.crc32(section) != crc:
            found.release()
            raise SnapshotCorrupt(f"the {name} section fails its checksum")
    return found


class Status(NamedTuple):
    """What ``kvstore snapshot status`` shows, after etcdctl's: the file's CRC-32, the
    revision it holds, its number of keys and its size."""
    hash: int
    revision: int
    total_keys: int
    total_size: int
    log_index: int


def status(data: Buffer) -> Status:
    found = sections(data)
    found.release()
    return Status(zlib.crc32(data), found.envelope["current_rev"], found.envelope["key_count"],
                  len(data), found.envelope["index"])
