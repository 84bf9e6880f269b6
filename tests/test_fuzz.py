"""Fuzzing in the test suite (tools/fuzz): every target's seeds, the inputs of past findings,
then a short budget of hypothesis inputs per target. `make fuzz` runs the long budget.

Each target runs the compiled decoder and its twin on the same input: an exception the callers
do not expect, a disagreement or an input slower than the per-input limit fails the test, with
the input (shrunk by hypothesis) in the message.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ beside kvstore/

from tools.fuzz import TARGETS, load  # noqa: E402
from tools.fuzz.harness import run_hypothesis, run_one  # noqa: E402

# In process, no server.
pytestmark = pytest.mark.inprocess

SECONDS = float(os.environ.get("FUZZ_TEST_SECONDS", "2"))
# The budget runs in the first pass of `make test` (h2, compiled code selected): every target
# compares the compiled code with its twin whatever kvstore selects, and none uses a transport,
# so the grpcio and KVSTORE_NO_EXT passes would only repeat it. They replay seeds and findings.
BUDGET_PASS = (os.environ.get("KVSTORE_TEST_TRANSPORT", "h2") == "h2"
               and os.environ.get("KVSTORE_NO_EXT", "") in ("", "0"))

# Inputs that failed once: (target, input, what was wrong).
FINDINGS: list[tuple[str, bytes, str]] = []


@pytest.fixture(params=list(TARGETS))
def target(request):
    module = load(request.param)
    yield module
    close = getattr(module, "close", None)
    if close is not None:
        close()


def test_seeds(target):
    for seed in target.seeds():
        run_one(target, seed)


@pytest.mark.parametrize("name, data, what", FINDINGS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(FINDINGS)])
def test_past_findings(name, data, what):
    run_one(load(name), data)


@pytest.mark.skipif(not BUDGET_PASS, reason="the budget runs in the h2 pass on compiled code")
def test_short_budget(target):
    stats = run_hypothesis(target, SECONDS)
    print(f"fuzz {stats.target}: {stats.inputs} inputs, {stats.crashes} crashes, {stats.hangs} hangs"
          f" in {stats.seconds:.1f} s")
    assert stats.crashes == 0 and stats.hangs == 0, "\n".join(stats.findings)
    assert stats.inputs > 0
