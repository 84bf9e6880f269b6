"""Runs Debian's etcdctl (v3 API) as a subprocess against one endpoint, with a timeout.

``Etcdctl`` drives one server. ``Differential`` drives kvstore and, when a reference etcd is
given, runs every command against it too and asserts that both gave the same exit code, the
same stdout and the same error text, after dropping what naturally differs between two
clusters (cluster/member ids, raft term, the client's own log lines).
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
TIMEOUT = 20.0  # seconds for one etcdctl run; its own --command-timeout is 5s

# etcdctl's client logs each failed unary attempt as one JSON line on stderr (zap), e.g.
# {"level":"warn",...,"msg":"retrying of unary invoker failed",...}. They carry random client
# ids and timestamps, so comparisons drop them.
_ZAP_LINE = re.compile(r'^\{"level":.*\}$')
# -w fields lines that identify the cluster rather than describe the data.
_FIELDS_IDS = re.compile(r'^"(ClusterID|MemberID|RaftTerm)" : ')
_HEADER_IDS = ("cluster_id", "member_id", "raft_term")


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    endpoint: str = ""

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def error(self) -> str:
        """stderr without the client's zap log lines (what etcdctl itself printed)."""
        return "\n".join(line for line in self.stderr.splitlines() if not _ZAP_LINE.match(line.strip()))

    def json(self):
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (f"etcdctl --endpoints={self.endpoint} {' '.join(map(repr, self.args))} "
                f"-> rc={self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


class Etcdctl:
    def __init__(self, endpoint: str, timeout: float = TIMEOUT):
        self.endpoint = endpoint
        self.timeout = timeout

    def command(self, *args: str) -> tuple[list[str], dict]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        cmd = [ETCDCTL, f"--endpoints={self.endpoint}", "--dial-timeout=5s",
               "--command-timeout=5s", *args]
        return cmd, env

    def start(self, *args: str) -> Background:
        """Starts etcdctl in the background (watch, keep-alive, elect, lock...)."""
        return Background(self, args)

    def run(self, *args: str, input: str | None = None, check: bool = False) -> Result:
        cmd, env = self.command(*args)
        # surrogateescape: keys/values need not be UTF-8 (and -w protobuf is binary).
        p = subprocess.run(cmd, input=input if input is not None else "", capture_output=True,
                           encoding="utf-8", errors="surrogateescape", env=env,
                           timeout=self.timeout)
        r = Result(list(args), p.returncode, p.stdout, p.stderr, self.endpoint)
        if check:
            assert r.returncode == 0, str(r)
        return r

    def ok(self, *args: str, input: str | None = None) -> Result:
        return self.run(*args, input=input, check=True)

    def fail(self, *args: str, input: str | None = None) -> Result:
        r = self.run(*args, input=input)
        assert r.returncode != 0, f"expected failure: {r}"
        return r

    def json(self, *args: str, input: str | None = None):
        return self.ok(*args, "-w", "json", input=input).json()

    def revision(self) -> int:
        """The store's current revision (from a Range header)."""
        return self.json("get", "!rev-probe")["header"]["revision"]


# -- normalisation ------------------------------------------------------------------------------

def _strip_ids(obj, drop: tuple[str, ...]):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "header" and isinstance(v, dict):
                v = {hk: hv for hk, hv in v.items() if hk not in drop}
            out[k] = _strip_ids(v, drop)
        return out
    if isinstance(obj, list):
        return [_strip_ids(v, drop) for v in obj]
    return obj


def normalize_stdout(stdout: str, drop_header: tuple[str, ...] = ()) -> object:
    """JSON output: parsed, without header ids. -w fields: without id lines. Else as is."""
    drop = _HEADER_IDS + tuple(drop_header)
    s = stdout.strip()
    if s[:1] in ("{", "["):
        try:
            return _strip_ids(json.loads(s), drop)
        except ValueError:
            pass
    lines = stdout.splitlines()
    if any(_FIELDS_IDS.match(line) for line in lines):
        return "\n".join(line for line in lines if not _FIELDS_IDS.match(line))
    return stdout


def comparable(r: Result, drop_header: tuple[str, ...] = ()) -> tuple:
    return r.returncode, normalize_stdout(r.stdout, drop_header), r.error


# -- decoding -json output ----------------------------------------------------------------------

def b64(s: str | None) -> str:
    return base64.b64decode(s or "").decode("utf-8", "surrogateescape")


def kvs(resp: dict) -> list[dict]:
    """The kvs of a -w json Range response, keys and values decoded, absent fields as 0/""."""
    out = []
    for kv in resp.get("kvs", []):
        out.append({"key": b64(kv.get("key")), "value": b64(kv.get("value")),
                    "create": kv.get("create_revision", 0), "mod": kv.get("mod_revision", 0),
                    "version": kv.get("version", 0), "lease": kv.get("lease", 0)})
    return out


class Differential:
    """etcdctl against kvstore, checked against the same command on a reference etcd.

    Both servers are kept in lockstep (every write goes to both), so revisions given as
    arguments (``--rev``, ``compaction REV``) mean the same on both. ``sync()`` re-aligns
    them should a kvstore divergence have made one move ahead.
    """

    def __init__(self, kv: Etcdctl, ref: Etcdctl | None):
        self.kv = kv
        self.ref = ref

    def sync(self) -> None:
        if self.ref is None:
            return
        for _ in range(1000):
            a, b = self.kv.revision(), self.ref.revision()
            if a == b:
                return
            (self.kv if a < b else self.ref).ok("put", "!sync", "pad")
        raise AssertionError("could not align revisions of kvstore and etcd")

    def run(self, *args: str, input: str | None = None, drop_header: tuple[str, ...] = ()
            ) -> Result:
        r = self.kv.run(*args, input=input)
        if self.ref is not None:
            e = self.ref.run(*args, input=input)
            assert comparable(r, drop_header) == comparable(e, drop_header), (
                f"kvstore and etcd differ on `etcdctl {' '.join(map(repr, args))}`\n"
                f"=== kvstore\n{r}\n=== etcd\n{e}")
        return r

    def ok(self, *args: str, input: str | None = None, **kw) -> Result:
        r = self.run(*args, input=input, **kw)
        assert r.returncode == 0, str(r)
        return r

    def fail(self, *args: str, input: str | None = None, **kw) -> Result:
        r = self.run(*args, input=input, **kw)
        assert r.returncode != 0, f"expected failure: {r}"
        return r

    def json(self, *args: str, input: str | None = None, **kw):
        return self.ok(*args, "-w", "json", input=input, **kw).json()

    def each(self):
        """kvstore's Etcdctl, then etcd's (if any): for checks that hold on each on its own."""
        return [c for c in (self.kv, self.ref) if c is not None]


class Background:
    """etcdctl running in the background, in its own process group; stdout and stderr are
    collected line by line as they come. Always ``kill()`` it (in a finally)."""

    def __init__(self, ctl: Etcdctl, args):
        self.args = list(args)
        self.endpoint = ctl.endpoint
        cmd, env = ctl.command(*args)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True)
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(f, buf), daemon=True)
                         for f, buf in ((self.proc.stdout, self._out),
                                        (self.proc.stderr, self._err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(f, buf: list) -> None:
        for raw in iter(f.readline, b""):
            buf.append(raw.decode("utf-8", "surrogateescape").rstrip("\n"))
        f.close()

    @property
    def lines(self) -> list[str]:
        """stdout lines so far."""
        return list(self._out)

    @property
    def error(self) -> str:
        """stderr so far, without the client's zap log lines."""
        return "\n".join(line for line in self._err if not _ZAP_LINE.match(line.strip()))

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "output") -> list[str]:
        """Waits until predicate(stdout lines) holds; returns the lines."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self}")
            time.sleep(0.02)

    def wait_lines(self, n: int, timeout: float = 10.0) -> list[str]:
        return self.wait_for(lambda lines: len(lines) >= n, timeout, f"{n} lines")

    def signal(self, sig=signal.SIGINT) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        """Waits for the exit; returns the exit code (output fully read)."""
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        return rc

    def kill(self) -> None:
        """SIGKILL to the whole process group (etcdctl and any command it runs)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def __str__(self) -> str:
        return (f"etcdctl --endpoints={self.endpoint} {' '.join(map(repr, self.args))} "
                f"(rc={self.proc.poll()})\n--- stdout\n" + "\n".join(self._out) +
                "\n--- stderr\n" + "\n".join(self._err))


# -- fixtures shared by the etcdctl test modules (imported there: one server pair per module) --

import pytest  # noqa: E402

from procs import EtcdProcess, KvstoreProcess  # noqa: E402


@pytest.fixture(scope="module")
def kv_server(tmp_path_factory):
    with KvstoreProcess(tmp_path_factory.mktemp("etcdctl-kv") / "kv") as server:
        yield server


@pytest.fixture(scope="module")
def ref_server(tmp_path_factory):
    # Debian's etcd is installed by the project's test set-up (scripts/install-test-deps.sh).
    assert EtcdProcess.available(), "etcd is missing: run `make test` (it installs etcd-server)"
    with EtcdProcess(tmp_path_factory.mktemp("etcdctl-etcd") / "etcd") as server:
        yield server


@pytest.fixture
def ctl(kv_server, ref_server) -> Differential:
    d = Differential(Etcdctl(kv_server.endpoint), Etcdctl(ref_server.endpoint))
    d.sync()
    return d
