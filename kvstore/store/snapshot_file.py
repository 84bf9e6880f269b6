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
import threading
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


class SectionChecksum:
    """A section's length and CRC-32, kept up as its parts are made."""

    __slots__ = ("length", "crc")

    def __init__(self) -> None:
        self.length = 0
        self.crc = 0

    def add(self, part: bytes) -> None:
        self.length += len(part)
        self.crc = zlib.crc32(part, self.crc)


def tail(fields: dict[str, Any], keys: SectionChecksum, history: SectionChecksum,
         key_count: int) -> bytes:
    """The envelope and trailer that end a file whose sections were ``keys`` and ``history``."""
    envelope = msgpack.packb({**fields, "keys_len": keys.length, "keys_crc": keys.crc,
                              "history_len": history.length, "history_crc": history.crc,
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


def sections(data: Buffer, checked: bool = True) -> Sections:
    """The envelope and both sections (views of ``data``) of an intact file; raises
    SnapshotCorrupt otherwise. ``checked=False``: the sections' checksums are left to the
    caller (SectionsCheck)."""
    env, _ = read_envelope(data)
    keys_len = env["keys_len"]
    with memoryview(data) as whole:
        found = Sections(env, whole[:keys_len], whole[keys_len:keys_len + env["history_len"]])
    if checked:
        failed = _failed_section(found)
        if failed is not None:
            found.release()
            raise SnapshotCorrupt(f"the {failed} section fails its checksum")
    return found


def _failed_section(found: Sections) -> str | None:
    """The section whose CRC-32 is not the envelope's, if any."""
    env = found.envelope
    if zlib.crc32(found.keys) != env["keys_crc"]:
        return "key"
    if zlib.crc32(found.history) != env["history_crc"]:
        return "history"
    return None


class SectionsCheck:
    """The sections' checksums, computed on a thread of their own while the caller decodes
    them (zlib lets go of the GIL; at 1M keys the CRC-32 of ~350 MB is ~0.1 s, a quarter of
    the decoding). ``wait()`` raises SnapshotCorrupt if one fails: the caller waits for it
    before trusting what it decoded, and before it says the bytes are undecodable (decoding
    damaged bytes is safe: every length is checked against the section's)."""

    def __init__(self, found: Sections):
        self._found = found
        self._failed: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="snapshot-checksums", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._failed = _failed_section(self._found)
        except BaseException as e:  # (re-raised by wait)
            self._error = e

    def join(self) -> None:
        """Until the checksums are computed (the views are then free to be released)."""
        self._thread.join()

    def wait(self) -> None:
        """Until the checksums are computed; raises if one fails."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._failed is not None:
            raise SnapshotCorrupt(f"the {self._failed} section fails its checksum")


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
