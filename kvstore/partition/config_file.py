"""A partition map from a TOML file (``kvstore serve --partitions FILE``)::

    [[partition]]
    name = "default"                    # the one without prefixes: every other key
    url = "http://127.0.0.1:2379"

    [[partition]]
    name = "pods"
    prefixes = ["/registry/pods/"]
    url = "http://127.0.0.1:2383"
    resources = ["/pods"]               # kube-apiserver group/resource, for the overrides

Errors name the file, the partition and the field.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..server.config import ConfigError
from .map import Partition, PartitionMap

FIELDS = {"name", "prefixes", "url", "resources"}


def load_partition_map(path: str | Path) -> PartitionMap:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return parse_partition_map(doc)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_partition_map(doc: dict[str, Any]) -> PartitionMap:
    unknown = set(doc) - {"partition"}
    if unknown:
        raise ConfigError(f"unknown table or key {sorted(unknown)[0]!r} (expected [[partition]])")
    tables = doc.get("partition")
    if not isinstance(tables, list) or not tables:
        raise ConfigError("no [[partition]] tables")
    return PartitionMap.of(_partition(i, t) for i, t in enumerate(tables, 1))


def _partition(number: int, table: Any) -> Partition:
    where = f"partition {number}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: not a table")
    name = table.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: name (a string) is required")
    where = f"{where} ({name})"
    extra = set(table) - FIELDS
    if extra:
        raise ConfigError(f"{where}: unknown field {sorted(extra)[0]!r} "
                          f"(fields: {', '.join(sorted(FIELDS))})")
    url = table.get("url", "")
    if not isinstance(url, str):
        raise ConfigError(f"{where}: url must be a string")
    return Partition(name, tuple(p.encode() for p in _strings(where, table, "prefixes")), url,
                     tuple(_strings(where, table, "resources")))


def _strings(where: str, table: dict, field: str) -> list[str]:
    value = table.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {field} must be a list of strings")
    return value
