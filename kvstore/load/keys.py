"""The key space of the raw scenarios, with etcd benchmark's knobs.

etcd's tool writes a key as a varint of its index in ``--key-size`` bytes; ours are readable:
``--prefix`` then the index in decimal, zero-padded to ``--key-size`` digits, so that a run's
keys sort in index order and ``etcdctl get --prefix`` shows them.
"""
from __future__ import annotations

import random

# the range_end that covers every key under a prefix: the partition map's (etcd's
# GetPrefixRangeEnd), for the scenarios to import from here
from ..partition.map import prefix_end

__all__ = ["KeySpace", "prefix_end"]

PRECOMPUTED_KEYS = 1_000_000


class KeySpace:
    """``size`` keys under ``prefix``; ``pick(seq)`` chooses request ``seq``'s key: the next one
    in order with ``sequential`` (etcd's --sequential-keys), else a uniformly random one."""

    def __init__(self, prefix: bytes, key_size: int, size: int, sequential: bool):
        digits = len(str(size - 1))
        if digits > key_size:
            raise ValueError(f"--key-size {key_size} is too small for --key-space-size {size} "
                             f"(its indexes need {digits} digits)")
        self.prefix = prefix
        self.key_size = key_size
        self.size = size
        self.sequential = sequential
        self._random = random.random
        # a request's key is on the hot path: built once, up to a million of them
        self._keys = [self.key(i) for i in range(size)] if size <= PRECOMPUTED_KEYS else None

    def key(self, index: int) -> bytes:
        return self.prefix + b"%0*d" % (self.key_size, index)

    def index(self, seq: int) -> int:
        return seq % self.size if self.sequential else int(self._random() * self.size)

    def pick(self, seq: int) -> bytes:
        i = seq % self.size if self.sequential else int(self._random() * self.size)
        keys = self._keys
        return keys[i] if keys is not None else self.key(i)

    def all(self) -> list[bytes]:
        return list(self._keys) if self._keys is not None else [self.key(i) for i in range(self.size)]
