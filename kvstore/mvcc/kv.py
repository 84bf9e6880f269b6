"""One revision of one key, as etcd's mvccpb.KeyValue carries it."""
from __future__ import annotations

from .wire import encode_kv


class KeyValue:
    """Immutable by convention: once written to the index a KeyValue never changes.

    A tombstone (the revision that deleted a key) is a KeyValue with ``version == 0``,
    no value, and ``mod_revision`` set to the deleting revision, as etcd's DELETE events show it.
    """

    __slots__ = ("key", "create_revision", "mod_revision", "version", "value", "lease",
                 "encoded", "value_start", "value_end")

    def __init__(self, key: bytes, create_revision: int, mod_revision: int, version: int,
                 value: bytes, lease: int):
        self.key = key
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.value = value
        self.lease = lease
        # The serialized mvccpb.KeyValue, and where its value field lies (wire.py).
        self.encoded, self.value_start, self.value_end = encode_kv(
            key, create_revision, mod_revision, version, value, lease)

    @classmethod
    def tombstone(cls, key: bytes, revision: int) -> KeyValue:
        return cls(key, 0, revision, 0, b"", 0)

    @property
    def is_tombstone(self) -> bool:
        return self.version == 0

    def as_tuple(self) -> tuple:
        return (self.key, self.create_revision, self.mod_revision, self.version, self.value, self.lease)

    def __eq__(self, other):
        return isinstance(other, KeyValue) and self.as_tuple() == other.as_tuple()

    def __hash__(self):
        return hash(self.as_tuple())

    def __repr__(self):
        return (f"KeyValue(key={self.key!r}, create={self.create_revision}, mod={self.mod_revision}, "
                f"version={self.version}, value={self.value[:32]!r}, lease={self.lease})")
