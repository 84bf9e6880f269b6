"""The supervisor's restart policy, in this process, with workers that fail at once."""
from __future__ import annotations

import asyncio
import sys

from kvstore.partition.map import Partition, PartitionMap
from kvstore.partition.supervisor import Backoff, Supervisor
from procs import free_port


def one_partition_map() -> PartitionMap:
    return PartitionMap.of([Partition("default", url=f"http://127.0.0.1:{free_port()}")])


async def supervise(tmp_path, argv, seconds: float) -> Supervisor:
    sup = Supervisor(one_partition_map(), lambda part: argv, tmp_path / "d",
                     [f"http://127.0.0.1:{free_port()}"],
                     Backoff(first=0.05, most=0.2, stable_after=10.0))
    stop = asyncio.Event()
    runner = asyncio.ensure_future(sup.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(runner, 10)
    return sup


def test_a_worker_that_keeps_exiting_is_restarted_with_growing_delays(tmp_path, caplog):
    argv = [sys.executable, "-c", "import sys; print('cannot serve: disk full'); sys.exit(3)"]
    caplog.set_level("WARNING", logger="kvstore.supervisor")
    sup = asyncio.run(supervise(tmp_path, argv, 2.0))
    worker = sup.workers[0]
    # Each start of a Python interpreter takes some tens of ms here; delays 0.05, 0.1, 0.2, 0.2...
    assert 3 <= worker.restarts <= 20
    assert worker.last_exit == "exited with status 3"
    # the supervisor's own lines: caplog has every logger's warnings (asyncio's child watcher
    # once logged one here, about a pid another waitpid had reaped: CI at 84538ba)
    messages = [r.getMessage() for r in caplog.records if r.name == "kvstore.supervisor"]
    assert "partition default exited with status 3" in messages[0]
    assert "last output: cannot serve: disk full" in messages[0]
    delays = [m.rsplit("restarting in ", 1)[1] for m in messages]
    assert delays[:3] == ["0.1 s", "0.1 s", "0.2 s"]  # 0.05 and 0.1 print as 0.1 (%.1f)
    assert set(delays[3:]) <= {"0.2 s"}  # never beyond Backoff.most


def test_a_worker_that_cannot_be_executed_is_retried_too(tmp_path, caplog):
    caplog.set_level("WARNING", logger="kvstore.supervisor")
    sup = asyncio.run(supervise(tmp_path, [str(tmp_path / "no-such-program")], 0.6))
    worker = sup.workers[0]
    assert worker.restarts >= 2
    assert worker.last_exit.startswith("could not be started: ")
    assert "No such file or directory" in worker.last_exit
    assert not worker.running
