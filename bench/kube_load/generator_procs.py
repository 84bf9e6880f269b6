"""The generator processes as the coordinator sees them, commanded over pipes. They are spawned:
a child imports generator_main from kube_load.generator (and the entry script as __mp_main__,
which runs none of its main())."""
from __future__ import annotations

import contextlib
import multiprocessing
import time

from etcd_side_by_side import proc_tree_cpu

from .generator import generator_main


class Generators:
    """--procs generator processes, commanded over pipes, all at once."""

    def __init__(self, cfgs: list[dict]):
        ctx = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        for cfg in cfgs:
            ours, theirs = ctx.Pipe()
            p = ctx.Process(target=generator_main, args=(theirs, cfg), daemon=True,
                            name=f"kube-gen-{cfg['worker']}")
            p.start()
            self.pipes.append(ours)
            self.procs.append(p)

    def ask(self, *cmd, timeout: float = 120, only: int | None = None) -> list[dict]:
        targets = [only] if only is not None else range(len(self.pipes))
        for i in targets:
            self.pipes[i].send(cmd)
        out = []
        deadline = time.monotonic() + timeout
        for i in targets:
            if not self.pipes[i].poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"generator {i} did not answer {cmd[0]!r} in {timeout:.0f} s")
            reply = self.pipes[i].recv()
            if "error" in reply:
                raise RuntimeError(f"generator {i}, {cmd[0]}: {reply['error']}")
            out.append(reply)
        return out

    def cpu(self) -> float:
        return sum(proc_tree_cpu(p.pid) or 0.0 for p in self.procs)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            for pipe in self.pipes:
                pipe.send(("stop",))
        for p in self.procs:
            p.join(2)  # one still in a step (Ctrl-C) does not read its pipe: killed
            if p.is_alive():
                p.kill()
                p.join(5)
