"""The server processes of the setups, and the builds they run (kvstore's, checked compiled;
etcd's version)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from etcd_side_by_side import REPO, EtcdServer, Server, child_env


def kvstore_env() -> dict:
    env = child_env()
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def kvstore_build() -> str:
    """The build the servers (and the generator's HTTP/2 parsing) will run: the pure-Python
    twins are refused."""
    probe = ("import kvstore.mvcc as m; "
             "from kvstore.h2 import hpack_select as h, frame_reader_select as f; "
             "print(m.COMPILED and h.COMPILED and f.COMPILED)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=kvstore_env(), timeout=60)
    if out.stdout.strip() != "True":
        sys.exit("error: kvstore's compiled extensions are not importable (pip install -e . builds "
                 f"them); refusing to measure the pure-Python twins. {out.stderr.strip()[-500:]}")
    return "compiled"


def profile_flag_available() -> bool:
    """Whether `kvstore serve` has --profile (the supervisor) yet."""
    out = subprocess.run([sys.executable, "-m", "kvstore", "serve", "--help"], capture_output=True,
                         text=True, env=kvstore_env(), timeout=60, cwd=str(REPO))
    return "--profile" in out.stdout


class Proc(Server):
    """A server process with a given command (its log in workdir/NAME.log)."""

    def __init__(self, name: str, workdir: Path, port: int, cmd: list[str], env: dict):
        self.name = name
        super().__init__(workdir, False)
        self.port = port
        self.cmd = cmd
        self._env = env

    def command(self) -> list[str]:
        return self.cmd

    def env(self) -> dict:
        return self._env


class NamedEtcd(EtcdServer):
    def __init__(self, name: str, workdir: Path, port: int, etcd_bin: str, quota: int):
        self.name = name
        super().__init__(workdir, False, etcd_bin, quota)
        self.port = port  # its peer port is an ephemeral one, above every port block


def etcd_version(etcd_bin: str) -> str:
    try:
        out = subprocess.run([etcd_bin, "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"
