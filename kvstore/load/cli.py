"""`kvstore load SCENARIO [options]` and `kvstore load plot results.json`."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ..client.credentials import credentials, user_name
from .argtypes import positive_float, positive_int
from .plan import RunPlan
from .scenarios import SCENARIOS

FORMAT = "kvstore-load/1"  # results.json's layout (docs/load.md)

# exit status of a run that ended early, by how it ended (its results are still written)
EXIT_STATUS = {"completed": 0, "failed": 1, "lost": 3, "interrupted": 130}


def add_load_parser(commands: argparse._SubParsersAction) -> None:
    load = commands.add_parser(
        "load", help="drive etcd endpoints with a workload and measure it",
        description="Drives any etcd endpoint (kvstore or etcd) with a scenario's requests, "
                    "closed loop or at a --rate, and reports throughput and HDR latency "
                    "percentiles. See docs/load.md.")
    scenarios = load.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name, scenario in SCENARIOS.items():
        p = scenarios.add_parser(name, help=scenario.help, description=scenario.help)
        _add_run_arguments(p)
        scenario.add_arguments(p)
    plot = scenarios.add_parser("plot", help="draw a results.json as a PNG",
                                description="Draws throughput, latency percentiles over time and "
                                            "the latency distribution from a results.json alone.")
    plot.add_argument("results", help="a results.json written by --out")
    plot.add_argument("--out", default=None, help="the PNG to write (default: RESULTS with .png)")


def _endpoints(value: str) -> list[str]:
    endpoints = [e.strip().removeprefix("http://") for e in value.split(",") if e.strip()]
    if not endpoints:
        raise argparse.ArgumentTypeError("no endpoint given")
    return endpoints


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where and how hard (etcd benchmark's flag names)")
    g.add_argument("--endpoints", type=_endpoints, default=["127.0.0.1:2379"],
                   help="comma-separated host:port of the endpoints (default 127.0.0.1:2379); "
                        "requests go round robin over their connections")
    g.add_argument("--cacert", default=None,
                   help="TLS: the CA that signs the servers' certificates (https:// endpoints use "
                        "the system's without it)")
    g.add_argument("--cert", default=None, help="TLS: a client certificate, for servers that ask")
    g.add_argument("--key", dest="tls_key", default=None, help="TLS: the client certificate's key")
    g.add_argument("--user", default=None,
                   help="USER[:PASSWORD]: every connection logs in as this user, where the "
                        "servers' auth is on; without a password, --password gives it, or a "
                        "prompt asks (the password is never written to --out)")
    g.add_argument("--password", default=None, help="the user's password")
    g.add_argument("--conns", type=positive_int, default=1,
                   help="connections to each endpoint, in total over --procs (default 1; each "
                        "worker has at least one)")
    g.add_argument("--clients", type=positive_int, default=1,
                   help="closed loop: concurrent clients, each sending its next request when "
                        "the last is answered, in total over --procs (default 1)")
    g.add_argument("--rate", type=positive_float, default=None,
                   help="open loop: requests/s in total, sent on schedule whatever the answers; "
                        "latency runs from each request's intended send time")
    g.add_argument("--max-in-flight", type=positive_int, default=1000,
                   help="open loop: requests out at once per worker; those due beyond it wait "
                        "(counted as backlog) (default 1000)")
    g.add_argument("--duration", type=positive_float, default=None, help="seconds of load")
    g.add_argument("--total", type=positive_int, default=None,
                   help="requests to send (default 10000 when --duration is not given)")
    g.add_argument("--procs", type=positive_int, default=1,
                   help="worker processes, each with its own event loop and connections (default 1)")
    g.add_argument("--timeout", type=positive_float, default=None,
                   help="each request's deadline in seconds (default: none, as etcd's tool)")
    g.add_argument("--drain", type=positive_float, default=5.0,
                   help="seconds to wait for answers in flight after the load stops; the rest "
                        "are cancelled and counted CANCELLED (default 5)")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="JSON", default=None, help="write the results here")
    g.add_argument("--plot", metavar="PNG", default=None,
                   help="draw the results here (needs matplotlib: pip install 'kvstore[plot]')")
    g.add_argument("--compare", nargs=2, metavar=("URL_A", "URL_B"), default=None,
                   help="run against A, then against B (instead of --endpoints), then a B/A table")
    g.add_argument("--quiet", action="store_true", help="no progress while running")


def main(args: argparse.Namespace) -> int:
    if args.scenario == "plot":
        return _plot_command(args)
    try:
        targets, plan = _plan(args)
    except ValueError as e:
        print(f"kvstore load: {e}", file=sys.stderr)
        return 2

    from . import report, runner
    from .progress import progress_for

    out = report.console()
    progress = progress_for(args.quiet)
    runs: list[dict[str, Any]] = []
    started = datetime.now(UTC).isoformat(timespec="seconds")
    status = 0
    for name, endpoints in targets:
        try:
            results = runner.run(plan.with_endpoints(endpoints), name, progress)
        except runner.LoadError as e:
            print(f"kvstore load: {e}", file=sys.stderr)
            status = 1
            break
        run = results.to_json()
        runs.append(run)
        out.print(report.run_table(run))
        out.print(report.run_footer(run), highlight=False)
        if run["ended"] != "completed":
            status = EXIT_STATUS[run["ended"]]
            break
    if not runs:
        return status
    document = {"format": FORMAT, "kvstore_version": _version(), "scenario": args.scenario,
                "options": _options(args), "started": started, "runs": runs, "compare": None}
    if len(runs) == 2:
        document["compare"] = report.compare_summary(runs[0], runs[1])
        out.print(report.compare_table(runs[0], runs[1]))
    if args.out:
        Path(args.out).write_text(json.dumps(document, indent=1) + "\n")
    if status:
        where = (f"partial results written to {args.out}" if args.out
                 else "partial results above (--out FILE writes them)")
        print(f"kvstore load: {runs[-1]['message']}; {where}", file=sys.stderr)
    if args.plot:
        status = _plot(document, args.plot) or status
    return status


def _plan(args: argparse.Namespace) -> tuple[list[tuple[str, list[str]]], RunPlan]:
    """The runs to make ((name, endpoints) each) and the plan they share."""
    scenario = SCENARIOS[args.scenario](args)  # a bad combination of its options: ValueError
    args.credentials = credentials(args.user, args.password)  # asked once, for every worker
    rate = args.rate if args.rate is not None else scenario.default_rate()
    total = args.total
    if total is None and args.duration is None:
        total = 10000  # etcd benchmark's default
    if rate is None and args.clients < args.procs:
        raise ValueError(f"--clients {args.clients} is fewer than --procs {args.procs}: "
                         "a worker would have no client")
    if args.compare:
        targets = [("A", _endpoints(args.compare[0])), ("B", _endpoints(args.compare[1]))]
    else:
        targets = [("run", args.endpoints)]
    targets = [(name, scenario.endpoints(endpoints)) for name, endpoints in targets]
    plan = RunPlan(scenario=args.scenario, options=args, endpoints=targets[0][1], procs=args.procs,
                   conns=args.conns, clients=args.clients, rate=rate, total=total,
                   duration=args.duration, max_in_flight=args.max_in_flight,
                   timeout=args.timeout, drain=args.drain)
    return targets, plan


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """What the run was asked, for results.json: never the password."""
    options = {k: v for k, v in sorted(vars(args).items())
               if k not in ("command", "password")
               and isinstance(v, str | int | float | bool | list | type(None))}
    if "user" in options:
        options["user"] = user_name(args.user)
    return options


def _version() -> str:
    try:
        return metadata.version("kvstore")
    except metadata.PackageNotFoundError:
        return "unknown"


def _plot(document: dict[str, Any], png: str) -> int:
    from .plot import PlotUnavailable, plot_results

    try:
        plot_results(document, png)
    except PlotUnavailable as e:
        print(f"kvstore load: {e}", file=sys.stderr)
        return 1
    return 0


def _plot_command(args: argparse.Namespace) -> int:
    source = Path(args.results)
    try:
        document = json.loads(source.read_text())
    except (OSError, ValueError) as e:
        print(f"kvstore load plot: cannot read {source}: {e}", file=sys.stderr)
        return 1
    if document.get("format") != FORMAT:
        print(f"kvstore load plot: {source} is not a kvstore load results file", file=sys.stderr)
        return 1
    png = args.out or str(source.with_suffix(".png"))
    status = _plot(document, png)
    if status == 0:
        print(png)
    return status
