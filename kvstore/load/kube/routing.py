"""Which endpoint each resource goes to: kube-apiserver's --etcd-servers-overrides.

``kvstore serve --profile kube`` writes the flags kube-apiserver needs to
DATA_DIR/kube-apiserver.flags; a kube scenario given them (or the overrides alone) sends
each resource's requests where kube-apiserver would, and the rest to --endpoints.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

FORMAT_ERROR = ("--etcd-servers-overrides must be group/resource#servers, comma separated, "
                "servers being URLs separated by semicolons")


def endpoint_of(url: str) -> str:
    """host:port, as --endpoints and the load's connections name an endpoint."""
    return url.strip().removeprefix("http://").removeprefix("https://").rstrip("/")


def parse_overrides(value: str) -> dict[str, list[str]]:
    """{"group/resource": [host:port, ...]} from kube's syntax (one CSV record, as pflag's
    StringSlice reads it)."""
    if not value:
        return {}
    rows = list(csv.reader(io.StringIO(value)))
    if len(rows) != 1:
        raise ValueError(FORMAT_ERROR)
    out: dict[str, list[str]] = {}
    for override in rows[0]:
        tokens = override.split("#")
        if len(tokens) != 2 or len(tokens[0].split("/")) != 2 or not tokens[1]:
            raise ValueError(FORMAT_ERROR)
        out[tokens[0]] = [endpoint_of(u) for u in tokens[1].split(";")]
    return out


def read_flags_file(path: str | Path) -> tuple[list[str], dict[str, list[str]]]:
    """--etcd-servers and --etcd-servers-overrides from a kube-apiserver.flags file (one
    ``--flag=value`` a line)."""
    servers: list[str] = []
    overrides: dict[str, list[str]] = {}
    for line in Path(path).read_text().splitlines():
        name, _, value = line.strip().partition("=")
        if name == "--etcd-servers":
            servers = [endpoint_of(u) for u in next(csv.reader(io.StringIO(value)))]
        elif name == "--etcd-servers-overrides":
            overrides = parse_overrides(value)
    return servers, overrides


class Routing:
    """Where each resource goes: its override's endpoints; the others go to the run's own
    endpoints (those that are no override's)."""

    def __init__(self, overrides: dict[str, list[str]] | None = None, servers: list[str] | None = None):
        self.overrides = overrides or {}
        self.servers = servers or []  # --etcd-servers from a flags file, if one was given
        self._overridden = {e for urls in self.overrides.values() for e in urls}

    def run_endpoints(self, given: list[str]) -> list[str]:
        """Every endpoint a run connects to: the default ones, then the overrides'."""
        return list(dict.fromkeys([*(self.servers or given),
                                   *(e for urls in self.overrides.values() for e in urls)]))

    def endpoints_for(self, resource: str, connected: list[str]) -> list[str]:
        if resource in self.overrides:
            return self.overrides[resource]
        return [e for e in connected if e not in self._overridden] or connected
