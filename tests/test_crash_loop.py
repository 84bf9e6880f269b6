"""kill -9 under load, a few cycles (tests/crash_loop.py; ``make soak`` runs hundreds): no
acknowledged write lost, no revision going backwards across restarts, and the history of
concurrent puts, reads, compare-and-swaps and deletes around the kills linearizable
(tests/linearizability.py)."""
from __future__ import annotations

import asyncio
import os

import pytest

from crash_loop import CrashLoop, Stats

pytestmark = pytest.mark.timeout(300)

CYCLES = int(os.environ.get("KVSTORE_CRASH_CYCLES", "6"))


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory) -> Stats:
    loop = CrashLoop(tmp_path_factory.mktemp("crash") / "data", CYCLES, seed=13,
                     kill_while_starting=0.3, full_every=3)
    stats = asyncio.run(loop.run())
    print("\n" + stats.summary())
    return stats


def test_no_acknowledged_write_is_lost_across_kill9_restarts(crash_run):
    s = crash_run
    assert s.cycles == CYCLES and s.kills >= CYCLES
    assert s.acknowledged > 50 * CYCLES and s.unknown > 0, s.summary()  # load, and cut-off writes
    assert s.lost == 0 and s.torn == 0, s.summary()
    assert not s.errors and not s.problems, s.summary()


def test_revisions_never_go_backwards_across_restarts(crash_run):
    assert crash_run.backwards == 0, crash_run.summary()


def test_a_watch_resumed_after_every_restart_misses_nothing(crash_run):
    s = crash_run
    assert s.watch_resumes == CYCLES and s.watch_events > s.acknowledged, s.summary()
    assert not s.watch_problems, s.summary()


def test_history_with_kill9_restarts_is_linearizable(crash_run):
    assert crash_run.history_ops > 200, crash_run.summary()
    assert crash_run.linearizable, crash_run.linearizability_report


def test_the_crash_loop_catches_a_server_that_forgets(tmp_path):
    """The same loop on the in-memory log, which forgets everything at a kill: acknowledged
    writes lost, the revision back at 1, the history not linearizable, and the watch sees
    revisions reused."""
    s = asyncio.run(CrashLoop(tmp_path / "data", 2, seed=1, backend="memory", kill_while_starting=0,
                              uptime=(0.8, 1.0)).run())
    assert s.lost > 50 and s.backwards == 2, s.summary()
    assert s.linearizable is False and "violation" in s.linearizability_report
    assert any("two writes acknowledged with revision" in p for p in s.watch_problems), s.summary()
    assert not s.ok
