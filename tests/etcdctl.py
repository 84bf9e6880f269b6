"""Runs Debian's etcdctl (v3 API) as a subprocess against one endpoint, with a timeout."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"

# etcdctl's client logs each failed unary attempt as one JSON line on stderr (zap), e.g.
# {"level":"warn",...,"msg":"retrying of unary invoker failed",...}. They carry random client
# ids and timestamps, so comparisons drop them.
_ZAP_LINE = re.compile(r'^\{"level":.*\}$')


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def error(self) -> str:
        """stderr without the client's zap log lines (what etcdctl itself printed)."""
        return "\n".join(l for l in self.stderr.splitlines() if not _ZAP_LINE.match(l.strip()))

    def json(self):
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (f"etcdctl {' '.join(self.args)} -> rc={self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


class Etcdctl:
    def __init__(self, endpoint: str, timeout: float = 15.0):
        self.endpoint = endpoint
        self.timeout = timeout

    def run(self, *args: str, input: str | None = None, check: bool = False,
            timeout: float | None = None) -> Result:
        env = dict(os.environ)
        env["ETCDCTL_API"] = "3"
        for k in [k for k in env if k.startswith("ETCDCTL_") and k != "ETCDCTL_API"]:
            del env[k]
        cmd = [ETCDCTL, f"--endpoints={self.endpoint}", "--dial-timeout=5s",
               "--command-timeout=5s", *args]
        p = subprocess.run(cmd, input=input if input is not None else "", capture_output=True,
                           text=True, env=env, timeout=timeout or self.timeout)
        r = Result(list(args), p.returncode, p.stdout, p.stderr)
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
