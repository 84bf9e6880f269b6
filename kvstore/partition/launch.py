"""``kvstore serve --profile kube`` / ``--partitions FILE``: from the serve flags to a
Supervisor and the command line of each worker."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..server.config import ConfigError, parse_client_url
from .config_file import load_partition_map
from .kube import METRICS_PORT_OFFSET, kube_map
from .map import Partition, PartitionMap
from .supervisor import Supervisor

PROFILES = ("kube",)
DEFAULT_LISTEN = "http://127.0.0.1:2379"

# Flags the supervisor turns into each worker's own; every other serve flag a user gave is
# passed to every worker as it is.
SUPERVISOR_ONLY = {"help", "profile", "partitions", "listen_metrics_urls", "name", "data_dir",
                   "listen_client_urls", "advertise_client_urls", "initial_advertise_peer_urls",
                   "partition", "cluster_name"}


def partitioned(args: argparse.Namespace) -> bool:
    return bool(args.profile or args.partitions)


def build_supervisor(args: argparse.Namespace, serve_parser: argparse.ArgumentParser) -> Supervisor:
    for given, flag in ((args.advertise_client_urls, "--advertise-client-urls"),
                        (args.initial_advertise_peer_urls, "--initial-advertise-peer-urls"),
                        (args.partition, "--partition")):
        if given:
            raise ConfigError(f"{flag} is a worker's own: with partitions, each one advertises "
                              "its own URL from the map")
    partition_map = _partition_map(args)
    data_dir = Path(args.data_dir or f"{args.name}.kvstore")
    if (data_dir / "meta").exists():
        raise ConfigError(f"data dir {data_dir} holds a single member's data; partitions keep "
                          f"theirs in {data_dir}/<partition>: choose another --data-dir")
    metrics_urls = args.listen_metrics_urls or [_metrics_url(partition_map.default.url)]
    taken = {parse_client_url(p.url) for p in partition_map}
    for url in metrics_urls:
        if parse_client_url(url) in taken:
            raise ConfigError(f"--listen-metrics-urls {url} is a partition's client URL")
    common = passthrough_flags(args, serve_parser)

    def worker_argv(part: Partition) -> list[str]:
        return [sys.executable, "-m", "kvstore", "serve", f"--name={part.name}",
                f"--partition={part.name}", f"--data-dir={data_dir / part.name}",
                f"--listen-client-urls={part.url}", f"--cluster-name={args.cluster_name}-{part.name}",
                *common]

    return Supervisor(partition_map, worker_argv, data_dir, metrics_urls,
                      http_health=args.transport == "h2")


def _partition_map(args: argparse.Namespace) -> PartitionMap:
    if args.profile and args.partitions:
        raise ConfigError("--profile and --partitions are exclusive: a profile is a built-in map")
    if args.partitions:
        if args.listen_client_urls:
            raise ConfigError("the partition map file gives each partition's URL: "
                              "leave out --listen-client-urls")
        partition_map = load_partition_map(args.partitions)
        if not all(p.url for p in partition_map):
            raise ConfigError(f"{args.partitions}: every partition needs a url to be served")
        return partition_map
    urls = args.listen_client_urls or [DEFAULT_LISTEN]
    if len(urls) != 1:
        raise ConfigError("--profile kube takes one --listen-client-urls URL, the default "
                          "partition's; the others listen on the ports after it")
    host, port = parse_client_url(urls[0])
    if port + METRICS_PORT_OFFSET + 4 > 65535:
        raise ConfigError(f"--listen-client-urls {urls[0]}: the partitions need the 6 ports "
                          "after it")
    return kube_map(host, port, scheme=urls[0].split("://", 1)[0])


def _metrics_url(default_url: str) -> str:
    host, port = parse_client_url(default_url)
    h = f"[{host}]" if ":" in host else host
    return f"http://{h}:{port + METRICS_PORT_OFFSET}"


def passthrough_flags(args: argparse.Namespace, serve_parser: argparse.ArgumentParser) -> list[str]:
    """The serve flags a user set (those not at their default), written back as flags."""
    out = []
    for action in serve_parser._actions:
        if not action.option_strings or action.dest in SUPERVISOR_ONLY:
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            out.append(flag)
        elif isinstance(value, list):
            out.append(f"{flag}={','.join(value)}")
        elif isinstance(value, float):  # a duration, in seconds
            out.append(f"{flag}={value}s")
        else:
            out.append(f"{flag}={value}")
    return out
