"""The partition map: which keyspace each partition owns, and where it listens.

A partition is one Store (its own log, revisions, compactor, watch hub and lease table). The
map routes a key to the partition owning the longest of its prefixes... made simple by
refusing nested prefixes: a key matches at most one prefix, and every key no prefix matches
belongs to the one partition without prefixes, the default.

``resources`` are kube-apiserver's names for what a partition holds (``group/resource``, the
core group empty: ``/pods``), from which the ``--etcd-servers-overrides`` value is written.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..server.config import ConfigError, parse_client_url

# \Z, not $: $ also matches before a trailing newline ("pods\n" would pass).
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?\Z")
# kube's parser splits an override on "#", its resource on "/", its servers on ";", and the
# flag's value on "," (a CSV record): none of these may appear inside a part.
RESOURCE = re.compile(r"^[a-z0-9.-]*/[a-z0-9.-]+\Z")


@dataclass(frozen=True)
class Partition:
    name: str
    prefixes: tuple[bytes, ...] = ()  # empty: the default partition (every other key)
    url: str = ""  # the client URL its worker listens on ("" for in-process use)
    resources: tuple[str, ...] = ()  # kube-apiserver group/resource names it stores

    @property
    def is_default(self) -> bool:
        return not self.prefixes


@dataclass(frozen=True)
class PartitionMap:
    partitions: tuple[Partition, ...]
    _sorted: tuple[tuple[bytes, Partition], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate(self.partitions)
        pairs = sorted((p, part) for part in self.partitions for p in part.prefixes)
        object.__setattr__(self, "_sorted", tuple(pairs))

    @classmethod
    def of(cls, partitions: Iterable[Partition]) -> PartitionMap:
        return cls(tuple(partitions))

    def __iter__(self):
        return iter(self.partitions)

    def __len__(self) -> int:
        return len(self.partitions)

    def __getitem__(self, name: str) -> Partition:
        for part in self.partitions:
            if part.name == name:
                return part
        raise KeyError(name)

    @property
    def default(self) -> Partition:
        return next(p for p in self.partitions if p.is_default)

    def partition_for(self, key: bytes) -> Partition:
        for prefix, part in self._sorted:
            if key.startswith(prefix):
                return part
        return self.default

    def partitions_for_range(self, key: bytes, range_end: bytes) -> list[Partition]:
        """The partitions holding keys in etcd's range [key, range_end) (range_end empty: the
        one key; ``\\0``: every key from ``key`` on)."""
        if not range_end:
            return [self.partition_for(key)]
        found: list[Partition] = []
        covered_to = key  # keys below this are known to be in a prefix partition
        gap = False
        for prefix, part in self._sorted:
            end = prefix_end(prefix)
            if not _overlaps(key, range_end, prefix, end):
                continue
            if prefix > covered_to:
                gap = True
            if part not in found:
                found.append(part)
            if not end:  # a prefix of 0xff bytes runs to the end of the keyspace
                covered_to = b""
                break
            covered_to = max(covered_to, end)
        if covered_to and (range_end == b"\0" or covered_to < range_end):
            gap = True
        if gap or not found:
            found.append(self.default)
        return found

    def kube_apiserver_flags(self) -> dict[str, str]:
        """``--etcd-servers`` (the default partition) and ``--etcd-servers-overrides`` (every
        resource of the others), in kube-apiserver's syntax."""
        overrides = [f"{resource}#{part.url}" for part in self.partitions if not part.is_default
                     for resource in part.resources]
        flags = {"--etcd-servers": self.default.url}
        if overrides:
            flags["--etcd-servers-overrides"] = ",".join(overrides)
        return flags


def prefix_end(prefix: bytes) -> bytes:
    """etcd's GetPrefixRangeEnd: the first key after every key starting with ``prefix``
    (empty when there is none)."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b""
    end[-1] += 1
    return bytes(end)


def _overlaps(key: bytes, range_end: bytes, lo: bytes, hi: bytes) -> bool:
    """[key, range_end) meets [lo, hi) (hi empty: no upper bound; range_end \\0: none)."""
    below_end = range_end == b"\0" or lo < range_end
    above_start = not hi or key < hi
    return below_end and above_start


def validate(partitions: Sequence[Partition]) -> None:
    """Clear errors for maps that would route a key to two places, or nowhere."""
    if not partitions:
        raise ConfigError("the partition map is empty")
    names: set[str] = set()
    urls: dict[str, str] = {}
    owner: dict[bytes, str] = {}
    resources: dict[str, str] = {}
    for part in partitions:
        where = f"partition {part.name!r}"
        if not NAME.match(part.name):
            raise ConfigError(f"{where}: a name is 1-32 of a-z, 0-9 and '-', not starting or "
                              "ending with '-'")
        if part.name in names:
            raise ConfigError(f"{where} is defined twice")
        names.add(part.name)
        if part.url:
            parse_client_url(part.url)
            address = part.url.split("://", 1)[1].rstrip("/")
            if address in urls:
                raise ConfigError(f"{where} listens on {part.url}, as partition "
                                  f"{urls[address]!r} does")
            urls[address] = part.name
        for prefix in part.prefixes:
            if not isinstance(prefix, bytes):
                raise ConfigError(f"{where}: prefix {prefix!r} is not bytes")
            if not prefix:
                raise ConfigError(f"{where}: an empty prefix (the default partition is the one "
                                  "without prefixes)")
            for other, other_name in owner.items():
                if prefix.startswith(other) or other.startswith(prefix):
                    raise ConfigError(f"{where}: prefix {prefix.decode(errors='replace')!r} "
                                      f"overlaps {other.decode(errors='replace')!r} of partition "
                                      f"{other_name!r}")
            owner[prefix] = part.name
        for resource in part.resources:
            if part.is_default:
                raise ConfigError(f"{where}: the default partition takes every resource no "
                                  "other one names; it lists none")
            if not RESOURCE.match(resource):
                raise ConfigError(f"{where}: resource {resource!r} is not group/resource "
                                  "(the core group is empty: /pods)")
            if resource in resources:
                raise ConfigError(f"{where}: resource {resource!r} is also in partition "
                                  f"{resources[resource]!r}")
            resources[resource] = part.name
    defaults = [p.name for p in partitions if p.is_default]
    if len(defaults) != 1:
        raise ConfigError("exactly one partition must have no prefixes (the default, for every "
                          f"other key); found {len(defaults)}: {', '.join(defaults) or 'none'}")
    with_url = sum(1 for p in partitions if p.url)
    if with_url not in (0, len(partitions)):
        raise ConfigError("either every partition has a url or none does")
