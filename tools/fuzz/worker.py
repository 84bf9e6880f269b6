"""One target's fuzzing run, in a process of its own (started by tools/fuzz/__main__.py).

atheris: libFuzzer drives the target under the coverage of kvstore's Python code (the pure
twins are instrumented as they are imported; the compiled code runs on the same inputs), with
the seeds as its corpus (kept and grown in WORKDIR/corpus/TARGET), its own per-input timeout,
and crash and timeout inputs written to WORKDIR/findings/TARGET/. It reports on stderr.

hypothesis: batches of examples until the time is up (harness.run_hypothesis; the alarm times
each input), and a watchdog that dumps the stacks and ends the process if the run overstays (an
input stuck in compiled code never sees the alarm); prints its stats as JSON on the last line
of stdout, and writes each failing input to WORKDIR/findings/TARGET/.
"""
from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import math
import sys
from pathlib import Path

from . import TARGETS, load
from .harness import run_hypothesis, run_one


def _atheris(name: str, seconds: int, hang_seconds: float, workdir: Path, max_len: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["kvstore"]):
        target = load(name)
    corpus = workdir / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in target.seeds():
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}").write_bytes(seed)
    findings = workdir / "findings" / name
    findings.mkdir(parents=True, exist_ok=True)

    def one(data: bytes) -> None:
        run_one(target, data, None)  # libFuzzer's -timeout times each input

    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", f"-timeout={max(1, math.ceil(hang_seconds))}",
                   f"-max_len={max_len}", f"-artifact_prefix={findings}/", "-rss_limit_mb=4096",
                   "-print_final_stats=1", str(corpus)], one)
    atheris.Fuzz()


def _hypothesis(name: str, seconds: int, hang_seconds: float, workdir: Path) -> None:
    target = load(name)
    # an input stuck in compiled code never sees the alarm: dump the stacks and exit
    faulthandler.dump_traceback_later(max(30.0, 10 * hang_seconds) + seconds, exit=True)
    stats = run_hypothesis(target, seconds, hang_seconds)
    faulthandler.cancel_dump_traceback_later()
    close = getattr(target, "close", None)
    if close is not None:
        close()
    if stats.findings:
        findings = workdir / "findings" / name
        findings.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(stats.findings):
            (findings / f"hypothesis-{i}.txt").write_text(text + "\n")
    print(json.dumps(stats.as_dict()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True, choices=sorted(TARGETS))
    parser.add_argument("--engine", required=True, choices=["atheris", "hypothesis"])
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--hang-seconds", type=float, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--max-len", type=int, default=8192)
    args = parser.parse_args()
    if args.engine == "atheris":
        _atheris(args.target, args.seconds, args.hang_seconds, args.workdir, args.max_len)
    else:
        _hypothesis(args.target, args.seconds, args.hang_seconds, args.workdir)


if __name__ == "__main__":
    main()
