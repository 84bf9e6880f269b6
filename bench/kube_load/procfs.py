"""/proc readers for the CPU of each server process, a supervisor's workers apart."""
from __future__ import annotations

import os


def own_cpu(pid: int) -> float:
    """utime+stime of one process (all its threads), without its children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def worker_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    for i, a in enumerate(argv):
        if a.startswith("--name="):
            return a.split("=", 1)[1]
        if a == "--name" and i + 1 < len(argv):
            return argv[i + 1]
    return str(pid)
