#!/usr/bin/env python3
"""Side-by-side load test of kvstore and a real etcd, with etcd's own load generator.

Starts Debian's etcd and kvstore (LMDB log) on free loopback ports, each with a fresh
temporary data dir, and drives them with etcd v3.4's `tools/benchmark` (built by
../shared/tools/build-etcd-benchmark.sh) for the workloads `put`, `range` and `txn-put` (the
default) and `watch`, `watch-latency` and `lease-keepalive` (--workloads, or --all) at several
client counts. --kvstore-transports h2,grpcio runs one kvstore server per transport
(kvstore-h2, kvstore-grpcio), each on its own port and data dir. Reports throughput, p99
latency, the server's CPU-seconds during the run and requests per CPU-second of the server
process (utime+stime from /proc, the process and its descendants), each kvstore with its
ratios to etcd, as Markdown tables, and optionally the raw results as JSON. A run counts only
if the tool exited cleanly, printed its summary, got exactly the expected number of results,
and reported no errors (on stdout or stderr).

Stdlib only. Every subprocess has a timeout; a run that hangs is killed and reported as
failed; a server that fails to start or dies is reported in the table, not a crash; both
servers are always stopped (also on Ctrl-C / SIGTERM).

    python bench/etcd_side_by_side.py --total 5000
    python bench/etcd_side_by_side.py --kvstore-transports h2,grpcio --pin
    python bench/etcd_side_by_side.py --servers etcd --total 2000 --json /tmp/res.json
    python bench/etcd_side_by_side.py --workloads watch,watch-latency,lease-keepalive
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO.parent / "shared" / "tools" / "build-etcd-benchmark.sh"

ALL_SERVERS = ("etcd", "kvstore")
KVSTORE_TRANSPORTS = ("h2", "grpcio")  # `kvstore serve --transport`
BASELINE = "etcd"  # the server every other one is compared with
# The goal the headline table checks: requests per server CPU-second >= GOAL_PER_CPU x etcd's,
# and p99 no worse than etcd's, on these workloads.
GOAL_PER_CPU = 1.5
GOAL_WORKLOADS = ("put", "range")
KV_WORKLOADS = ("put", "range", "txn-put")
WATCH_LEASE_WORKLOADS = ("watch", "watch-latency", "lease-keepalive")
ALL_WORKLOADS = KV_WORKLOADS + WATCH_LEASE_WORKLOADS
DEFAULT_WORKLOADS = KV_WORKLOADS
# --total means: requests for put/range/txn-put/lease-keepalive; puts for watch and watch-latency
# (each put fans out to its key's watchers).
DEFAULT_TOTALS = {"put": 20000, "range": 20000, "txn-put": 20000,
                  "watch": 4000, "watch-latency": 1000, "lease-keepalive": 10000}
# Table rows per workload. `watch` prints two summaries (watch creation, then events received).
ROWS = {w: (w,) for w in ALL_WORKLOADS}
ROWS["watch"] = ("watch create", "watch events")
# What one "request" is in each row (legend under the table).
ROW_UNITS = {"watch create": "watch created (Watch() call returned)",
             "watch events": "watch event received by a watcher",
             "watch-latency": "watch event received by a watcher",
             "lease-keepalive": "LeaseKeepAlive round trip (KeepAliveOnce)"}
WATCH_CREATE_MARK = "Watch creation summary:"
WATCH_EVENTS_MARK = "Watch events received summary:"
# benchmark v3.4's `watch` panics with its default --put-rate=0 ("rate: Wait(n=1) exceeds
# limiter's burst 0"); "no limit" is passed as this rate instead.
UNLIMITED_PUT_RATE = 1_000_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

# `range` reads one existing key. The tool's own keys are binary varints padded with NUL bytes
# (which cannot be passed on a command line), so the range seed writes 64 one-byte keys with
# `put --key-size=1 --sequential-keys --key-space-size=64`: key i is the byte 2*i (zig-zag
# varint), i.e. "\x00", "\x02", ..., "~". 'r' (0x72, i=57) is one of them.
RANGE_KEY = "r"


class Interrupted(Exception):
    """SIGTERM (or SIGINT) received: stop everything and report what we have."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, n: int = 3000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode(errors="replace")


def child_env() -> dict:
    env = dict(os.environ)
    for k in list(env):  # loopback only: never let a proxy setting redirect the traffic
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy"):
            del env[k]
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    """Signal the process group of a child we started with start_new_session=True."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def proc_tree_cpu(pid: int) -> float | None:
    """utime+stime (seconds) of pid and all its live descendants (+ reaped children's times)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, cpu seconds)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()  # fields after "pid (comm) "
        ppid = int(fields[1])
        # utime, stime, cutime, cstime are stat fields 14..17 -> index 11..14 here
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        stats[int(entry)] = (ppid, ticks / CLK_TCK)
    if pid not in stats:
        return None
    total, todo = 0.0, [pid]
    children: dict[int, list[int]] = {}
    for p, (pp, _) in stats.items():
        children.setdefault(pp, []).append(p)
    while todo:
        p = todo.pop()
        total += stats[p][1]
        todo.extend(children.get(p, ()))
    return total


def cpu_busy() -> dict[str, float]:
    """Busy seconds per CPU ("cpu0", ...) since boot, from /proc/stat; {} if unreadable. Counts
    user+nice+system+irq+softirq+steal (steal: the hypervisor ran something else). Interrupt
    time is also charged to the task it interrupted (the loopback traffic of a run mostly to
    the server and the load generator), so process CPU times and this add up."""
    busy = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *vals = line.split()
                if name.startswith("cpu") and name != "cpu":
                    v = [int(x) for x in vals[:8]]
                    busy[name] = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return {}
    return busy


# A run is flagged as noisy when processes other than the loaded server and the load generator
# used more than this many cores on average during it (see Bench.run: other_cpu_s).
OTHER_CPU_NOISY = 0.10


# ---------------------------------------------------------------------------------------------
# servers


class Server:
    name = "server"

    def __init__(self, workdir: Path, pin: bool):
        self.data_dir = workdir / f"{self.name}-data"
        self.log_path = workdir / f"{self.name}.log"
        self.port = free_port()
        self.pin = pin
        self.proc: subprocess.Popen | None = None
        self.error: str | None = None  # set when the server is unusable (start failed, died)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return child_env()

    def full_command(self) -> list[str]:
        cmd = self.command()
        return (["taskset", "-c", "0"] + cmd) if self.pin else cmd

    def start(self) -> None:
        cmd = self.full_command()
        log(f"[{self.name}] starting: {shlex.join(cmd)}")
        with open(self.log_path, "ab") as out:
            # own session: a terminal Ctrl-C reaches only us; we stop the server ourselves
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env(),
                                         cwd=str(REPO), start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died_reason(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"{self.name} exited with status {self.proc.returncode}"
        return None

    def cpu(self) -> float | None:
        return proc_tree_cpu(self.proc.pid) if self.alive() else None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log(f"[{self.name}] did not stop in 10s after SIGTERM; SIGKILL")
        kill_group(self.proc, signal.SIGKILL)  # also any stray child left in its group
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            log(f"[{self.name}] pid {self.proc.pid} did not exit after SIGKILL")


class EtcdServer(Server):
    name = "etcd"

    def __init__(self, workdir: Path, pin: bool, etcd_bin: str, quota_bytes: int):
        super().__init__(workdir, pin)
        self.peer_port = free_port()
        self.etcd_bin = etcd_bin
        self.quota_bytes = quota_bytes

    def command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [self.etcd_bin, "--name", "bench", "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"bench={peer}", "--initial-cluster-state", "new",
                "--log-level", "error", "--quota-backend-bytes", str(self.quota_bytes)]

    def env(self) -> dict:
        env = child_env()
        for k in [k for k in env if k.startswith("ETCD")]:
            del env[k]  # no stray ETCD_* configuration from the caller's environment
        return env


class KvstoreServer(Server):
    name = "kvstore"

    def __init__(self, workdir: Path, pin: bool, extra_args: list[str],
                 transport: str | None = None):
        """transport None: kvstore's default transport, named "kvstore"; else `--transport T`,
        named "kvstore-T" (its own port, data dir and log file)."""
        self.transport = transport
        if transport:
            self.name = f"kvstore-{transport}"
        super().__init__(workdir, pin)
        self.extra_args = extra_args

    def command(self) -> list[str]:
        transport = ["--transport", self.transport] if self.transport else []
        return [sys.executable, "-m", "kvstore", "serve", "--name", "bench",
                "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--log-backend", "lmdb", *transport, *self.extra_args]

    def env(self) -> dict:
        env = child_env()
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env


# ---------------------------------------------------------------------------------------------
# the load generator


@dataclass
class BenchOutput:
    ok: bool
    reason: str = ""
    rc: int | None = None
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    stats: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    stdout_tail: str = ""
    stderr_tail: str = ""
    text: str = ""  # the tool's whole stdout
    stderr_errors: list = field(default_factory=list)    # stderr lines that are not INFO/WARNING
    stderr_warnings: list = field(default_factory=list)  # WARNING:/warning: lines on stderr
    phase_cpu: dict = field(default_factory=dict)  # marker -> server CPU s from run start to it
    # CPU-seconds all CPUs were busy during the run, and what of it was neither the loaded server
    # nor the load generator (other processes: the idle servers, this script, anything else)
    busy_cpu_s: dict = field(default_factory=dict)
    other_cpu_s: float | None = None


def classify_stderr(text: str) -> tuple[list[str], list[str]]:
    """(error lines, warning lines) of the tool's stderr. grpc-go's INFO chatter is ignored; a
    clean run prints nothing else. Anything not INFO/WARNING (a panic, "Failed to ...", grpc
    ERROR lines) is an error."""
    errors, warnings = [], []
    for line in text.replace("\r", "\n").splitlines():
        line = line.rstrip()
        if not line.strip() or line.startswith("INFO:"):
            continue
        if line.startswith("WARNING:") or line.lower().startswith("warning:"):
            warnings.append(line)
        else:
            errors.append(line)
    return errors, warnings


def parse_report(text: str) -> tuple[dict, dict]:
    """Parse pkg/report's summary: Summary (secs), Requests/sec, latency percentiles, errors, and
    `count`, the number of successful results (the sum of the response time histogram)."""
    stats: dict = {"percentiles_s": {}}
    errors: dict = {}
    section = None
    for raw in text.replace("\r", "\n").splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.endswith(":") and not raw.startswith(" "):
            section = line[:-1]
            continue
        if section == "Summary" and ":" in line:
            key, _, val = line.partition(":")
            val = val.strip().removesuffix("secs.").strip()
            try:
                num = float(val)
            except ValueError:
                continue
            stats[{"Total": "total_s", "Slowest": "slowest_s", "Fastest": "fastest_s",
                   "Average": "average_s", "Stddev": "stddev_s",
                   "Requests/sec": "requests_per_s"}.get(key.strip(), key.strip())] = num
        elif section == "Response time histogram" and "[" in line and "]" in line:
            try:
                n = int(line[line.index("[") + 1:line.index("]")])
            except ValueError:
                continue
            stats["count"] = stats.get("count", 0) + n
        elif section == "Latency distribution" and "% in " in line:
            pct, _, rest = line.partition("% in ")
            try:
                stats["percentiles_s"][pct] = float(rest.split()[0])
            except (ValueError, IndexError):
                pass
        elif section == "Error distribution" and line.startswith("["):
            count, _, msg = line[1:].partition("]")
            try:
                errors[msg.strip()] = errors.get(msg.strip(), 0) + int(count)
            except ValueError:
                pass
    stats["p99_s"] = stats["percentiles_s"].get("99")
    return stats, errors


def split_watch_output(text: str) -> dict[str, str | None]:
    """`benchmark watch` prints "Watch creation summary:" + report, then a progress bar for the
    events, then "Watch events received summary:" + report. None for a summary never printed."""
    i, j = text.find(WATCH_CREATE_MARK), text.find(WATCH_EVENTS_MARK)
    create = None if i < 0 else text[i + len(WATCH_CREATE_MARK):j if j > i else None]
    events = None if j < 0 else text[j + len(WATCH_EVENTS_MARK):]
    return {"watch create": create, "watch events": events}


def run_benchmark(cmd: list[str], timeout: float, outdir: Path, tag: str,
                  abort=None, markers: tuple[str, ...] = (), on_marker=None) -> BenchOutput:
    """Run the load generator; kill it after `timeout` s, or as soon as abort() returns a reason
    (the server died: the tool would otherwise retry against a closed port until the timeout).
    on_marker(m) is called as soon as the string m appears on the tool's stdout (watched every
    20 ms), e.g. to read the server's CPU time between the phases of one run."""
    out_path, err_path = outdir / f"{tag}.out", outdir / f"{tag}.err"
    pending = list(markers)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        env = child_env()
        env["GRPC_GO_LOG_SEVERITY_LEVEL"] = "error"  # no per-connection INFO chatter
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        deadline = t0 + timeout
        timed_out = aborted = None
        try:
            while True:
                try:
                    proc.wait(min(0.02 if pending else 0.5,
                                  max(0.01, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if pending:
                        seen = out_path.read_bytes().decode(errors="replace")
                        for m in [m for m in pending if m in seen]:
                            pending.remove(m)
                            if on_marker is not None:
                                on_marker(m)
                    if time.monotonic() >= deadline:
                        timed_out = True
                        break
                    if abort is not None and (aborted := abort()):
                        break
        finally:  # also on Ctrl-C: never leave a load generator running
            kill_group(proc, signal.SIGKILL)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
    elapsed = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out_path.read_bytes().decode(errors="replace")
    stats, errors = parse_report(text)
    stderr_errors, stderr_warnings = classify_stderr(tail(err_path, 200_000))
    res = BenchOutput(ok=True, rc=proc.returncode, elapsed_s=round(elapsed, 3),
                      client_cpu_s=round((after.ru_utime + after.ru_stime)
                                         - (before.ru_utime + before.ru_stime), 3),
                      stats=stats, errors=errors,
                      stdout_tail=text[-1500:] if not stats.get("requests_per_s") else "",
                      stderr_tail=tail(err_path, 1500), text=text,
                      stderr_errors=stderr_errors, stderr_warnings=stderr_warnings)
    if aborted:
        res.ok, res.reason = False, f"aborted after {elapsed:.1f}s: {aborted}"
    elif timed_out:
        res.ok, res.reason = False, f"timeout after {timeout:.0f}s (killed)"
    elif proc.returncode != 0:
        res.ok, res.reason = False, f"benchmark exited with status {proc.returncode}"
        if stderr_errors:
            res.reason += ": " + " | ".join(stderr_errors[:3])
    elif stderr_errors:
        res.ok = False
        res.reason = (f"benchmark printed {len(stderr_errors)} error line(s) on stderr: "
                      + " | ".join(stderr_errors[:3]))
    elif "requests_per_s" not in stats:
        res.ok = False
        res.reason = ("all requests failed: " + "; ".join(f"{n}x {m}" for m, n in errors.items())
                      if errors else "no summary in benchmark output")
    return res


class Bench:
    def __init__(self, args, binary: str, outdir: Path):
        self.args = args
        self.binary = binary
        self.outdir = outdir
        self.seq = 0

    def command(self, server: Server, clients: int, conns: int, sub: list[str]) -> list[str]:
        cmd = [self.binary, f"--endpoints={server.endpoint}", f"--conns={conns}",
               f"--clients={clients}", "--precise", *sub]
        return (["taskset", "-c", "1"] + cmd) if self.args.pin else cmd

    def workload_args(self, workload: str, total: int) -> list[str]:
        a = self.args
        if workload == "put":
            return ["put", f"--key-size={a.key_size}", f"--val-size={a.val_size}",
                    f"--total={total}", "--sequential-keys=false",
                    f"--key-space-size={a.key_space_size}"]
        if workload == "range":
            return ["range", RANGE_KEY, f"--total={total}", f"--consistency={a.consistency}"]
        if workload == "txn-put":
            return ["txn-put", f"--total={total}", f"--key-size={a.key_size}",
                    f"--val-size={a.val_size}", f"--key-space-size={a.key_space_size}"]
        if workload == "watch":
            # --sequential-keys with --key-space-size = --watched-key-total: the watched keys are
            # distinct, so the expected event count is exact (see expected_counts)
            rate = a.watch_put_rate if a.watch_put_rate > 0 else UNLIMITED_PUT_RATE
            return ["watch", f"--streams={a.watch_streams}",
                    f"--watch-per-stream={a.watch_per_stream}",
                    f"--watched-key-total={a.watch_keys}", "--sequential-keys",
                    f"--key-space-size={a.watch_keys}", f"--put-total={total}",
                    f"--put-rate={rate}"]
        if workload == "watch-latency":
            return ["watch-latency", f"--total={total}", f"--put-rate={a.watch_latency_put_rate}"]
        if workload == "lease-keepalive":
            return ["lease-keepalive", f"--total={total}"]
        raise ValueError(workload)

    def expected_counts(self, workload: str, total: int, clients: int) -> dict[str, int]:
        """Results each table row of a run must report (successes + errors), as the v3.4 tool
        computes them."""
        a = self.args
        if workload == "watch":
            watchers = a.watch_streams * a.watch_per_stream
            keys = [i % a.watch_keys for i in range(a.watch_keys)]  # --sequential-keys
            per_key = Counter(keys[i % len(keys)] for i in range(watchers))
            events = sum(per_key[keys[i % len(keys)]] for i in range(total))
            return {"watch create": watchers, "watch events": events}
        if workload == "watch-latency":  # each put is seen by every client's watcher
            return {"watch-latency": total * clients}
        return {workload: total}

    def run(self, server: Server, clients: int, conns: int, sub: list[str], timeout: float,
            label: str, markers: tuple[str, ...] = ()) -> tuple[list[str], BenchOutput, float | None]:
        self.seq += 1
        cmd = self.command(server, clients, conns, sub)
        log(f"[{server.name}] {label}: {shlex.join(cmd)}")
        busy0 = cpu_busy()
        cpu0 = server.cpu()
        at_marker: dict[str, float | None] = {}
        res = run_benchmark(cmd, timeout, self.outdir, f"{self.seq:03d}-{server.name}-{label}",
                            abort=server.died_reason, markers=markers,
                            on_marker=lambda m: at_marker.__setitem__(m, server.cpu()))
        cpu1 = server.cpu()
        busy1 = cpu_busy()
        res.busy_cpu_s = {k: round(busy1[k] - busy0[k], 2) for k in busy1 if k in busy0}
        res.phase_cpu = {m: round(c - cpu0, 3) for m, c in at_marker.items()
                         if c is not None and cpu0 is not None}
        died = server.died_reason()
        if died and not res.reason.startswith("aborted"):
            res.ok, res.reason = False, f"{died} during the run" + (f"; {res.reason}" if res.reason else "")
        cpu = round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None
        if cpu is not None and res.busy_cpu_s:
            res.other_cpu_s = round(max(0.0, sum(res.busy_cpu_s.values()) - cpu
                                        - res.client_cpu_s), 2)
        return cmd, res, cpu

    def probe(self, server: Server, timeout: float) -> str | None:
        """One linearizable range through the real gRPC path. None if it worked, else why not."""
        cmd = self.command(server, 1, 1, ["range", "bench-ready-probe", "--total=1"])
        res = run_benchmark(cmd, timeout, self.outdir, f"probe-{server.name}",
                            abort=server.died_reason)
        if res.ok and not res.errors:
            return None
        return res.reason or "; ".join(f"{n}x {m}" for m, n in res.errors.items())

    def wait_ready(self, server: Server, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        why = "port not open"
        while time.monotonic() < deadline:
            if (died := server.died_reason()):
                return died
            if tcp_open(server.port):
                why = self.probe(server, min(5.0, max(1.0, deadline - time.monotonic())))
                if why is None:
                    return None
            time.sleep(0.2)
        return f"not serving after {timeout:.0f}s: {why}"


# ---------------------------------------------------------------------------------------------
# main


def parse_list(s: str, allowed=None, conv=str) -> list:
    items = [conv(x.strip()) for x in s.split(",") if x.strip()]
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {','.join(allowed)}")
    return items


def parse_totals(s: str) -> dict:
    """'5000' (every workload) or 'put=20000,range=50000' (the rest keep their default)."""
    totals = dict(DEFAULT_TOTALS)
    if "=" not in s:
        return {w: int(s) for w in totals}
    for part in s.split(","):
        k, _, v = part.partition("=")
        if k.strip() not in totals:
            raise argparse.ArgumentTypeError(f"unknown workload {k!r}")
        totals[k.strip()] = int(v)
    return totals


def git_state() -> dict:
    """The commit the kvstore under test is at, and its uncommitted changes (kvstore/, ext/):
    the servers run the working tree as it is when they start."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True,
                                  timeout=10).stdout
        except Exception:  # noqa: BLE001 - informational only
            return ""
    changed = [line[3:] for line in git("status", "--porcelain", "--", "kvstore", "ext").splitlines()
               if not line[3:].endswith((".so", ".c"))]
    return {"head": git("rev-parse", "--short", "HEAD").strip() or "unknown", "changed": changed}


def get_benchmark_binary(args) -> str:
    if args.benchmark_bin:
        return args.benchmark_bin
    if not BUILD_SCRIPT.exists():
        sys.exit(f"error: {BUILD_SCRIPT} not found (pass --benchmark-bin)")
    log(f"building/locating etcd benchmark with {BUILD_SCRIPT}")
    try:
        r = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                           timeout=args.build_timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        sys.exit(f"error: {BUILD_SCRIPT} did not finish in {args.build_timeout}s")
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        sys.exit(f"error: {BUILD_SCRIPT} failed (status {r.returncode}):\n{r.stdout[-2000:]}\n"
                 f"{r.stderr[-2000:]}")
    return lines[-1]


def fmt_rate(x) -> str:
    return f"{x:,.0f}" if isinstance(x, (int, float)) else "–"


def fmt_ms(x) -> str:
    if not isinstance(x, (int, float)):
        return "–"
    ms = x * 1000
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def evaluate_rows(workload: str, res: BenchOutput, expected: dict[str, int],
                  cpu: float | None) -> dict[str, dict]:
    """The table rows of one run, with their numbers and whether each is a valid measurement:
    the tool exited cleanly (no timeout, status 0, no error lines on stderr, server alive),
    printed the row's summary, reported no errors, and counted exactly the expected results
    (histogram sum + errors). `watch` has two rows; the server CPU of the run is split at the
    moment "Watch creation summary:" appeared."""
    texts = split_watch_output(res.text) if workload == "watch" else {workload: res.text}
    # process-level failures (the row-level ones are found again below, per row)
    proc_reason = res.reason if not res.ok and not res.reason.startswith(
        ("all requests failed", "no summary")) else ""
    create_cpu = res.phase_cpu.get(WATCH_CREATE_MARK)
    rows = {}
    for row, txt in texts.items():
        stats, errors = parse_report(txt) if txt is not None else ({"percentiles_s": {}}, {})
        n_err = sum(errors.values())
        count = stats.get("count", 0)
        if workload != "watch":
            row_cpu = cpu
        elif row == "watch create":
            row_cpu = create_cpu
        else:
            row_cpu = round(cpu - create_cpu, 3) if cpu is not None and create_cpu is not None else None
        problems = [proc_reason] if proc_reason else []
        if txt is None:
            problems.append("the tool printed no summary" + (f" ({WATCH_EVENTS_MARK!r} missing)"
                                                               if row == "watch events" else ""))
        elif "requests_per_s" not in stats and not errors:
            problems.append("summary without any result")
        else:
            if n_err:
                problems.append(f"the tool reported {n_err} error(s): " + "; ".join(
                    f"{n}x {m}" for m, n in errors.items()))
            if count + n_err != expected[row]:
                problems.append(f"wrong count: the tool reported {count} results + {n_err} "
                                f"errors, expected {expected[row]}")
        ok = not problems
        rows[row] = {
            "ok": ok, "reason": "; ".join(problems),
            "requests_per_s": stats.get("requests_per_s"), "average_s": stats.get("average_s"),
            "p99_s": stats.get("p99_s"), "total_s": stats.get("total_s"),
            "slowest_s": stats.get("slowest_s"), "percentiles_s": stats.get("percentiles_s"),
            # v3.4 `watch` times an event from the arrival of its WatchResponse at the client
            "p99_is_latency": row != "watch events",
            "errors": errors, "errors_total": n_err, "count": count, "expected": expected[row],
            "succeeded": count if ok else None, "server_cpu_s": row_cpu,
            "requests_per_cpu_s": round(count / row_cpu, 1) if ok and count and row_cpu else None,
            "server_cpu_util": (round(row_cpu / stats["total_s"], 2)
                                if row_cpu and stats.get("total_s") else None),
        }
    return rows


def cell(r: dict | None, what: str) -> str:
    if r is None:
        return "–"
    if what == "rps":
        return fmt_rate(r.get("requests_per_s")) if r["ok"] else "**FAIL**"
    if not r["ok"]:
        return "–"
    if what == "p99":
        if r.get("p99_is_latency") is False:
            return "n/a†"
        return fmt_ms(r.get("p99_s"))
    if what == "cpu":
        x = r.get("server_cpu_s")
        return f"{x:.2f}" if isinstance(x, (int, float)) else "–"
    if what == "per_cpu":
        return fmt_rate(r.get("requests_per_cpu_s"))
    raise ValueError(what)


# what -> the record field a ratio to the baseline is taken of
RATIO_FIELDS = {"rps": "requests_per_s", "p99": "p99_s", "per_cpu": "requests_per_cpu_s"}


def ratio_value(r: dict | None, base: dict | None, what: str) -> float | None:
    """r's figure divided by the baseline's, for two valid measurements; None otherwise."""
    if not r or not base or not r["ok"] or not base["ok"]:
        return None
    if what == "p99" and (r.get("p99_is_latency") is False or base.get("p99_is_latency") is False):
        return None
    a, b = r.get(RATIO_FIELDS[what]), base.get(RATIO_FIELDS[what])
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return None
    return a / b


def fmt_ratio(x: float | None) -> str:
    return f"{x:.2f}×" if x is not None else "–"


def baseline_of(servers: list[str]) -> str | None:
    return BASELINE if BASELINE in servers and len(servers) > 1 else None


def table_rows(results: list[dict], servers: list[str], workloads: list[str]):
    """(workload, row name, shown clients, clients, {server: record or None}) in table order."""
    by = {(r["server"], r.get("row", r["workload"]), r["clients"]): r for r in results}
    for w in workloads:
        clients_seen = list(dict.fromkeys(r["clients"] for r in results if r["workload"] == w))
        for row_name in ROWS[w]:
            for c in clients_seen:
                rs = {s: by.get((s, row_name, c)) for s in servers}
                if all(v is None for v in rs.values()):
                    continue
                shown_c = f"{c} (watchers)" if w == "watch-latency" else str(c)
                yield w, row_name, shown_c, c, rs


def markdown_table(results: list[dict], servers: list[str], workloads: list[str]) -> str:
    """One row per workload and client count; one column group per server: req/s, p99, server
    CPU-seconds of the run, requests per CPU-second, and for every server but the baseline
    (etcd) the ratios of its req/s, p99 and req per CPU-s to the baseline's."""
    base = baseline_of(servers)
    head = ["workload", "clients"]
    for s in servers:
        cmp = base is not None and s != base
        head += [f"{s} req/s"] + ([f"{s} req/s ×{base}"] if cmp else [])
        head += [f"{s} p99"] + ([f"{s} p99 ×{base}"] if cmp else [])
        head += [f"{s} CPU-s", f"{s} req/CPU-s"] + ([f"{s} req/CPU-s ×{base}"] if cmp else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    notes, noisy_notes, legend, dagger = [], [], [], False
    for _w, row_name, shown_c, c, rs in table_rows(results, servers, workloads):
        if row_name in ROW_UNITS and row_name not in legend:
            legend.append(row_name)
        row = [row_name, shown_c]
        for s in servers:
            cmp = base is not None and s != base
            r = rs[s]
            row.append(cell(r, "rps"))
            if cmp:
                row.append(fmt_ratio(ratio_value(r, rs[base], "rps")))
            row.append(cell(r, "p99"))
            if cmp:
                row.append(fmt_ratio(ratio_value(r, rs[base], "p99")))
            row += [cell(r, "cpu"), cell(r, "per_cpu")]
            if cmp:
                row.append(fmt_ratio(ratio_value(r, rs[base], "per_cpu")))
        dagger |= any("n/a†" in x for x in row)
        lines.append("| " + " | ".join(row) + " |")
        for s in servers:
            r = rs[s]
            if r is None:
                continue
            if not r["ok"]:
                detail = r.get("reason") or ""
                if r.get("requests_per_s") is not None:
                    detail += (f" (not counted: the tool's summary said "
                               f"{fmt_rate(r['requests_per_s'])}/s over "
                               f"{r.get('count', 0)} results)")
                notes.append(f"- {s} {row_name} clients={c}: {detail}")
            if noisy(r):
                noisy_notes.append(f"- {s} {row_name} clients={c}: {r['other_cpu_s']:.2f} "
                                   f"CPU-s over {r['elapsed_s']:.1f} s "
                                   f"({r['other_cpu_s'] / r['elapsed_s']:.0%} of a core)")
            for wl in r.get("stderr_warnings") or ():
                notes.append(f"- {s} {row_name} clients={c}: stderr warning: {wl}")
    if base is not None:
        lines += ["", f"×{base}: the server's figure divided by {base}'s in the same row (req/s "
                      f"and req/CPU-s: higher is better; p99: lower is better)."]
    if legend:
        lines += ["", "One request is: " + "; ".join(f"{n}: {ROW_UNITS[n]}" for n in legend) + "."]
    if dagger:
        lines.append("† etcd's benchmark v3.4 times a watch event from the arrival of its "
                     "WatchResponse at the client to handing it on, not from the put: its p99 "
                     "is not a server latency (see watch-latency for that).")
    if noisy_notes:
        lines += ["", f"Noisy runs: other processes (neither the loaded server nor the load "
                      f"generator) used more than {OTHER_CPU_NOISY:.0%} of a core during these "
                      f"runs (from /proc/stat):", *noisy_notes]
    if notes:
        lines += ["", "Failures / errors:", *notes]
    return "\n".join(lines)


def noisy(r: dict) -> bool:
    other, wall = r.get("other_cpu_s"), r.get("elapsed_s")
    return bool(other is not None and wall and other / wall > OTHER_CPU_NOISY)


def headline_table(results: list[dict], servers: list[str], workloads: list[str]) -> str | None:
    """Per server other than the baseline: req per CPU-s and p99, each as a ratio to etcd's, and
    whether the goal (>= GOAL_PER_CPU x etcd per CPU-second, p99 <= etcd's) is met on the
    GOAL_WORKLOADS rows. None without a baseline."""
    base = baseline_of(servers)
    if base is None:
        return None
    others = [s for s in servers if s != base]
    head = ["workload", "clients"]
    for s in others:
        head += [f"{s} req/CPU-s ×{base}", f"{s} p99 ×{base}", f"{s} goal"]
    lines = [f"Headline: requests per server CPU-second and p99, as ratios to {base} "
             f"(goal on {' and '.join(GOAL_WORKLOADS)}: req/CPU-s ≥ {GOAL_PER_CPU:.2f}× and "
             f"p99 ≤ 1.00×)", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for w, row_name, shown_c, _c, rs in table_rows(results, servers, workloads):
        row = [row_name, shown_c]
        for s in others:
            per_cpu = ratio_value(rs[s], rs[base], "per_cpu")
            p99 = ratio_value(rs[s], rs[base], "p99")
            if w not in GOAL_WORKLOADS:
                goal = "(no goal)"
            elif per_cpu is None or p99 is None:
                goal = "–"
            else:
                misses = ([f"req/CPU-s < {GOAL_PER_CPU:.2f}×"] if per_cpu < GOAL_PER_CPU else [])
                misses += (["p99 > etcd"] if p99 > 1.0 else [])
                goal = "met" if not misses else "**missed** (" + ", ".join(misses) + ")"
            row += [fmt_ratio(per_cpu), fmt_ratio(p99), goal]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=lambda s: parse_list(s, ALL_SERVERS), default=list(ALL_SERVERS),
                   help="comma list of etcd,kvstore (default both)")
    p.add_argument("--kvstore-transports",
                   type=lambda s: list(dict.fromkeys(parse_list(s, KVSTORE_TRANSPORTS))),
                   default=None,
                   help="run one kvstore server per transport in this comma list of "
                        f"{','.join(KVSTORE_TRANSPORTS)} (`kvstore serve --transport T`), "
                        "named kvstore-T, each on its own port and data dir (default: one "
                        "server with kvstore's default transport, named kvstore)")
    wl = p.add_mutually_exclusive_group()
    wl.add_argument("--workloads", type=lambda s: parse_list(s, ALL_WORKLOADS),
                    default=list(DEFAULT_WORKLOADS),
                    help=f"comma list of {','.join(ALL_WORKLOADS)} "
                         f"(default {','.join(DEFAULT_WORKLOADS)})")
    wl.add_argument("--all", action="store_true", help="run every workload")
    p.add_argument("--clients", type=lambda s: parse_list(s, conv=int), default=[16, 64, 256],
                   help="comma list of gRPC client counts (default 16,64,256); not for "
                        "watch-latency, see --watch-latency-watchers")
    p.add_argument("--conns", default="auto",
                   help="gRPC connections per run: an integer, or 'auto' = max(1, clients/4) "
                        "(default; watch-latency: one per watcher)")
    p.add_argument("--total", type=parse_totals, default=dict(DEFAULT_TOTALS),
                   help="requests per run (puts for watch and watch-latency): N for every "
                        "workload, or e.g. put=20000,watch=2000 "
                        f"(default {','.join(f'{k}={v}' for k, v in DEFAULT_TOTALS.items())})")
    p.add_argument("--watch-streams", type=int, default=64,
                   help="watch: gRPC watch streams (default 64)")
    p.add_argument("--watch-per-stream", type=int, default=64,
                   help="watch: watchers per stream (default 64, i.e. 4096 watchers)")
    p.add_argument("--watch-keys", type=int, default=256,
                   help="watch: distinct watched keys (default 256, i.e. 16 watchers per key)")
    p.add_argument("--watch-put-rate", type=int, default=0,
                   help="watch: puts per second, 0 = no limit (default)")
    p.add_argument("--watch-latency-watchers", type=int, default=4,
                   help="watch-latency: watchers (the tool's --clients), each on its own "
                        "connection unless --conns is a number (default 4)")
    p.add_argument("--watch-latency-put-rate", type=int, default=200,
                   help="watch-latency: puts per second (default 200)")
    p.add_argument("--key-size", type=int, default=8)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--key-space-size", type=int, default=100000,
                   help="random keys for put/txn-put are drawn from this many (default 100000)")
    p.add_argument("--range-seed-keys", type=int, default=10000,
                   help="keys written before the first range run (default 10000)")
    p.add_argument("--consistency", choices=["l", "s"], default="s",
                   help="range consistency: s(erializable, default) or l(inearizable)")
    p.add_argument("--pin", action="store_true",
                   help="pin the servers with taskset -c 0 and the load generator with taskset -c 1")
    p.add_argument("--kvstore-args", default="",
                   help="extra args for `kvstore serve`, one shell-quoted string; use the = form when "
                        "it starts with a dash: --kvstore-args='--foo 1'")
    p.add_argument("--benchmark-bin", help="etcd benchmark binary (default: run build-etcd-benchmark.sh)")
    p.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    p.add_argument("--quota-backend-bytes", type=int, default=8 * 1024**3,
                   help="etcd --quota-backend-bytes (default 8 GiB)")
    p.add_argument("--run-timeout", type=float, default=180.0,
                   help="seconds before a benchmark run is killed and reported failed (default 180)")
    p.add_argument("--start-timeout", type=float, default=60.0,
                   help="seconds for a server to start serving (default 60)")
    p.add_argument("--build-timeout", type=float, default=1800.0)
    p.add_argument("--json", metavar="PATH", help="write raw results as JSON here")
    p.add_argument("--keep", action="store_true",
                   help="keep the temp dir (data dirs, server logs, benchmark outputs)")
    args = p.parse_args(argv)

    if args.pin and not shutil.which("taskset"):
        sys.exit("error: --pin needs taskset (util-linux)")
    if args.pin and (os.cpu_count() or 1) < 2:
        sys.exit("error: --pin needs at least 2 CPUs")
    if args.all:
        args.workloads = list(ALL_WORKLOADS)
    if args.kvstore_transports is not None:
        if "kvstore" not in args.servers:
            sys.exit("error: --kvstore-transports needs kvstore in --servers")
        if not args.kvstore_transports:
            sys.exit("error: --kvstore-transports is empty")
        if any(a == "--transport" or a.startswith("--transport=")
               for a in shlex.split(args.kvstore_args)):
            sys.exit("error: --kvstore-args must not set --transport with --kvstore-transports")
    # the server names, in run order: "kvstore" becomes kvstore-T per --kvstore-transports
    server_names: list[str] = []
    for name in args.servers:
        if name == "kvstore" and args.kvstore_transports:
            server_names += [f"kvstore-{t}" for t in args.kvstore_transports]
        else:
            server_names.append(name)
    if "range" in args.workloads and args.range_seed_keys < 1:
        sys.exit("error: --range-seed-keys must be >= 1")
    for opt in ("watch_streams", "watch_per_stream", "watch_keys", "watch_latency_watchers",
                "watch_latency_put_rate"):
        if getattr(args, opt) < 1:
            sys.exit(f"error: --{opt.replace('_', '-')} must be >= 1")
    if any(args.total[w] < 1 for w in args.workloads):
        sys.exit("error: --total must be >= 1")

    def clients_for(workload: str) -> list[int]:
        return [args.watch_latency_watchers] if workload == "watch-latency" else args.clients

    def conns_for(workload: str, clients: int) -> int:
        if args.conns != "auto":
            return max(1, int(args.conns))
        return clients if workload == "watch-latency" else max(1, clients // 4)

    binary = get_benchmark_binary(args)
    log(f"benchmark binary: {binary}")

    def on_sigterm(signum, frame):
        raise Interrupted(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_sigterm)

    workdir = Path(tempfile.mkdtemp(prefix="kvstore-bench-"))
    outdir = workdir / "runs"
    outdir.mkdir()
    bench = Bench(args, binary, outdir)
    servers: dict[str, Server] = {}
    results: list[dict] = []
    interrupted = None
    seeded: dict[str, str | None] = {}  # server -> None if seeded, else why not
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "benchmark_bin": binary, "pin": args.pin, "servers": server_names,
        "kvstore_transports": args.kvstore_transports, "kvstore_args": args.kvstore_args,
        "workloads": args.workloads, "clients": args.clients, "conns": args.conns,
        "totals": args.total, "key_size": args.key_size, "val_size": args.val_size,
        "key_space_size": args.key_space_size, "range_key": RANGE_KEY,
        "range_seed_keys": args.range_seed_keys, "consistency": args.consistency,
        "watch_streams": args.watch_streams, "watch_per_stream": args.watch_per_stream,
        "watch_keys": args.watch_keys, "watch_put_rate": args.watch_put_rate,
        "watch_latency_watchers": args.watch_latency_watchers,
        "watch_latency_put_rate": args.watch_latency_put_rate,
        "workdir": str(workdir), "server_commands": {}, "git": git_state(),
    }
    try:
        try:
            meta["etcd_version"] = subprocess.run(
                [args.etcd_bin, "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001 - informational only
            meta["etcd_version"] = f"unknown ({e})"

        for name in server_names:
            if name == "etcd":
                srv: Server = EtcdServer(workdir, args.pin, args.etcd_bin, args.quota_backend_bytes)
            else:
                transport = name.removeprefix("kvstore-") if name != "kvstore" else None
                srv = KvstoreServer(workdir, args.pin, shlex.split(args.kvstore_args), transport)
            assert srv.name == name
            servers[name] = srv
            meta["server_commands"][name] = shlex.join(srv.full_command())
            try:
                srv.start()
            except OSError as e:
                srv.error = f"could not start: {e}"
        for srv in servers.values():  # all start concurrently; wait for each
            if srv.error:
                continue
            srv.error = bench.wait_ready(srv, args.start_timeout)
            if srv.error:
                srv.error = f"start failed: {srv.error}"
                log(f"[{srv.name}] {srv.error}\n--- {srv.log_path} (tail) ---\n{tail(srv.log_path)}")
                srv.stop()
            else:
                log(f"[{srv.name}] serving on {srv.endpoint} (pid {srv.proc.pid})")

        for workload in args.workloads:
            total = args.total[workload]
            for clients in clients_for(workload):
                conns = conns_for(workload, clients)
                expected = bench.expected_counts(workload, total, clients)
                for name in server_names:  # interleaved: etcd, then each kvstore, per row
                    srv = servers[name]
                    recs = {row: {"server": name, "workload": workload, "row": row,
                                  "clients": clients, "conns": conns, "total": total,
                                  "expected": expected[row], "ok": False,
                                  "reason": "not run (interrupted)"} for row in ROWS[workload]}
                    results.extend(recs.values())

                    def set_all(**kw):
                        for r in recs.values():  # noqa: B023 - called within this iteration
                            r.update(kw)
                    if not srv.error and (died := srv.died_reason()):
                        srv.error = died
                    if srv.error:
                        set_all(reason=f"skipped: {srv.error}")
                        continue
                    if workload == "range" and name not in seeded:
                        why = seed_range(bench, srv, args)
                        seeded[name] = f"range seed failed: {why}" if why else None
                        if why:
                            log(f"[{name}] {seeded[name]}")
                    if workload == "range" and seeded.get(name):
                        set_all(reason=seeded[name])
                        continue
                    set_all(loadavg_1m_before=round(os.getloadavg()[0], 2))
                    sub = bench.workload_args(workload, total)
                    cmd, res, cpu = bench.run(
                        srv, clients, conns, sub, args.run_timeout, f"{workload}-c{clients}",
                        markers=(WATCH_CREATE_MARK,) if workload == "watch" else ())
                    rows = evaluate_rows(workload, res, expected, cpu)
                    set_all(command=shlex.join(cmd), client_cpu_s=res.client_cpu_s,
                            busy_cpu_s=res.busy_cpu_s, other_cpu_s=res.other_cpu_s,
                            elapsed_s=res.elapsed_s, run_server_cpu_s=cpu, rc=res.rc)
                    for row, m in rows.items():
                        recs[row].update(m)
                        r = recs[row]
                        if r["ok"]:
                            lat = (f"avg {fmt_ms(r['average_s'])}, p99 {fmt_ms(r['p99_s'])}, "
                                   if r["p99_is_latency"] else "")
                            log(f"[{name}] {row} c={clients}: {fmt_rate(r['requests_per_s'])} "
                                f"req/s, {lat}{r['count']} results, server CPU "
                                f"{r['server_cpu_s']}s")
                        else:
                            log(f"[{name}] {row} c={clients}: FAILED: {r['reason']}")
                    last = recs[ROWS[workload][-1]]
                    if res.stderr_warnings:
                        last["stderr_warnings"] = res.stderr_warnings[:5]
                    if all(r["ok"] for r in rows.values()):
                        continue
                    last["stdout_tail"], last["stderr_tail"] = res.text[-1500:], res.stderr_tail
                    errtail = "\n".join(line for line in res.stderr_tail.splitlines()
                                         if not line.startswith("INFO:"))
                    if errtail.strip():
                        log(f"    benchmark stderr (tail): {errtail[-500:].strip()}")
                    if not srv.died_reason():  # wedged? check before spending more timeouts
                        why = bench.probe(srv, 10.0)
                        if why:
                            srv.error = f"unresponsive after a failed run ({why})"
                            log(f"[{name}] {srv.error}; skipping its remaining runs")
                    else:
                        srv.error = srv.died_reason()
                        log(f"[{name}] {srv.error}\n--- log tail ---\n{tail(srv.log_path)}")
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = f"interrupted ({e or type(e).__name__})"
        log(f"\n{interrupted}: stopping servers, reporting partial results")
    finally:
        for srv in servers.values():
            srv.stop()
            log(f"[{srv.name}] stopped")

    for name, srv in servers.items():
        meta.setdefault("server_errors", {})[name] = srv.error
    meta["interrupted"] = interrupted
    loads = [r["loadavg_1m_before"] for r in results if "loadavg_1m_before" in r]
    print()
    totals = {w: args.total[w] for w in args.workloads}
    print(f"etcd benchmark vs {'/'.join(server_names)}: workloads {','.join(args.workloads)}, "
          f"conns {'clients/4' if args.conns == 'auto' else args.conns}, totals {totals}, "
          f"pin={'on' if args.pin else 'off'}")
    if set(args.workloads) & set(KV_WORKLOADS):
        print(f"put/range/txn-put: key {args.key_size} B, value {args.val_size} B, range "
              f"consistency {'serializable' if args.consistency == 's' else 'linearizable'}")
    if "watch" in args.workloads:
        print(f"watch: {args.watch_streams} streams x {args.watch_per_stream} watchers = "
              f"{args.watch_streams * args.watch_per_stream} watchers on {args.watch_keys} keys, "
              f"{args.total['watch']} puts, put rate "
              f"{args.watch_put_rate if args.watch_put_rate > 0 else 'unlimited'}")
    if "watch-latency" in args.workloads:
        print(f"watch-latency: {args.watch_latency_watchers} watchers on one key, "
              f"{args.total['watch-latency']} puts at {args.watch_latency_put_rate}/s "
              f"(conns {conns_for('watch-latency', args.watch_latency_watchers)})")
    ran = [r for r in results if r.get("other_cpu_s") is not None]
    if (n_noisy := sum(map(noisy, ran))):
        print(f"NOTE: during {n_noisy} of {len(ran)} runs, other processes used more than "
              f"{OTHER_CPU_NOISY:.0%} of a core (listed under the table): those numbers are noisy.")
    elif loads and max(loads) > 1.5 and not ran:
        print(f"NOTE: 1-min load average before the runs reached {max(loads):.1f} on "
              f"{os.cpu_count()} CPUs: other processes may have competed for the CPU.")
    if any(n.startswith("kvstore") for n in server_names):
        g = meta["git"]
        print(f"kvstore: git {g['head']}" + (f" + uncommitted changes in {', '.join(g['changed'])}"
                                             if g["changed"] else " (clean)"))
    if args.pin:
        print("pinned: every server on CPU 0 (taskset -c 0; only one is loaded at a time), the "
              "load generator on CPU 1 (taskset -c 1)")
    print()
    print(markdown_table(results, server_names, args.workloads))
    headline = headline_table(results, server_names, args.workloads)
    if headline:
        print()
        print(headline)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        log(f"raw results: {args.json}")
    if args.keep:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130
    return 0 if all(r["ok"] for r in results) else 1


def seed_range(bench: Bench, srv: Server, args) -> str | None:
    """Write the keys the range workload reads: the 64 one-byte keys (RANGE_KEY among them) and a
    bulk of --range-seed-keys 8-byte keys so that the store is not trivially small."""
    seeds = [
        ["put", "--key-size=1", f"--val-size={args.val_size}", "--sequential-keys",
         "--key-space-size=64", "--total=64"],
        ["put", f"--key-size={args.key_size}", f"--val-size={args.val_size}", "--sequential-keys",
         f"--key-space-size={args.range_seed_keys}", f"--total={args.range_seed_keys}"],
    ]
    for sub in seeds:
        _, res, _ = bench.run(srv, 16, 4, sub, args.run_timeout, "range-seed")
        if not res.ok or res.errors:
            return res.reason or "; ".join(f"{n}x {m}" for m, n in res.errors.items())
    return None


if __name__ == "__main__":
    sys.exit(main())
