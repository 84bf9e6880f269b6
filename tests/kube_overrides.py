"""kube-apiserver's parsing of --etcd-servers and --etcd-servers-overrides, written from its
source (k8s.io/apiserver/pkg/server/options/etcd.go, EtcdOptions.Validate and
ApplyWithStorageFactoryTo; both flags are pflag StringSlices, whose values are one CSV
record), to check the values kvstore prints against the syntax kube accepts."""
from __future__ import annotations

import csv
import io

FORMAT_ERROR = ("--etcd-servers-overrides invalid, must be of format: group/resource#servers, "
                "where servers are URLs, semicolon separated")


class KubeFlagError(ValueError):
    pass


def string_slice(value: str) -> list[str]:
    """pflag's StringSlice: the value read as one CSV record (encoding/csv)."""
    if value == "":
        return []
    rows = list(csv.reader(io.StringIO(value), strict=True))
    if len(rows) != 1:
        raise KubeFlagError(f"not one CSV record: {value!r}")
    return rows[0]


def parse_etcd_servers(value: str) -> list[str]:
    servers = string_slice(value)
    if not servers:
        raise KubeFlagError("--etcd-servers must be specified")
    return servers


def parse_etcd_servers_overrides(value: str) -> dict[tuple[str, str], list[str]]:
    """{(group, resource): servers}, as kube's storage factory gets them."""
    out: dict[tuple[str, str], list[str]] = {}
    for override in string_slice(value):
        tokens = override.split("#")
        if len(tokens) != 2:
            raise KubeFlagError(FORMAT_ERROR)
        apiresource = tokens[0].split("/")
        if len(apiresource) != 2:
            raise KubeFlagError(FORMAT_ERROR)
        group, resource = apiresource
        out[(group, resource)] = tokens[1].split(";")
    return out
