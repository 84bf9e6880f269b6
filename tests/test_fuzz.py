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
FINDINGS: list[tuple[str, bytes, str]] = [
    ("grpc_framing",
     b"\x0c\x00\x00\x00\x03\x00\x00\x00\x1e\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xe3bN\xcb\xcf\x17bNJ,"
     b"\x02\x00q\xd2\xd6\xde\n\x00\x00\x00",
     "a message whose payload format byte is 3 was inflated and delivered (gzip encoding): grpc-go"
     " ends the call INTERNAL for any format but 0 and 1"),
]


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


if BUDGET_PASS:  # the budget runs in the h2 pass, on compiled code (elsewhere it would repeat it)
    def test_short_budget(target):
        stats = run_hypothesis(target, SECONDS)
        print(f"fuzz {stats.target}: {stats.inputs} inputs, {stats.crashes} crashes, "
              f"{stats.hangs} hangs in {stats.seconds:.1f} s")
        assert stats.crashes == 0 and stats.hangs == 0, "\n".join(stats.findings)
        assert stats.inputs > 0


def test_grpc_payload_format_other_than_0_or_1_ends_the_call_internal():
    import gzip

    from tools.fuzz import grpc_framing as g

    body = gzip.compress(b"\x0a\x03foo")  # inflated and delivered before the fix
    for flag in (2, 3, 0x80, 0xFF):
        for gzip_encoding in (False, True):
            message = bytes([flag]) + len(body).to_bytes(4, "big") + body
            delivered, status = g._run_call("unary", gzip_encoding, 1024, [message], True)
            assert (delivered, status) == ([], g.g.INTERNAL)
