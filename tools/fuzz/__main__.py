"""``python -m tools.fuzz``: fuzzes each target for a time budget and reports, per target, the
inputs run, crashes and hangs (exit status 1 if there was any). See tools/fuzz/__init__.py."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from . import TARGETS
from .harness import HANG_SECONDS

ROOT = Path(__file__).resolve().parents[2]


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "hypothesis"
    return "atheris"


def _read_atheris(log: str, rc: int) -> dict:
    """inputs, crashes and hangs from libFuzzer's report."""
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    if done:
        inputs = int(done.group(1))
    else:
        units = (re.findall(r"stat::number_of_executed_units: (\d+)", log)
                 or re.findall(r"^#(\d+)\s", log, re.M))
        inputs = int(units[-1]) if units else 0
    hang = "ERROR: libFuzzer: timeout" in log
    crash = not hang and (rc != 0 or "Uncaught Python exception" in log or "ERROR: libFuzzer" in log)
    return {"inputs": inputs, "crashes": int(crash), "hangs": int(hang)}


def run_target(name: str, engine: str, seconds: int, hang_seconds: float, workdir: Path,
               max_len: int) -> dict:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    cmd = [sys.executable, "-m", "tools.fuzz.worker", "--target", name, "--engine", engine,
           "--seconds", str(seconds), "--hang-seconds", str(hang_seconds), "--workdir", str(workdir),
           "--max-len", str(max_len)]
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=seconds + 120 + 20 * hang_seconds)
            stuck = False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            stuck = True
    elapsed = time.monotonic() - start
    text = log_path.read_text(errors="replace")
    if engine == "atheris":
        result = _read_atheris(text, proc.returncode)
    else:
        lines = [line for line in text.splitlines() if line.startswith('{"target"')]
        if lines:
            stats = json.loads(lines[-1])
            result = {k: stats[k] for k in ("inputs", "crashes", "hangs")}
        else:  # the worker died (a signal, or the watchdog: an input that never returned)
            watchdog = "Timeout (" in text
            result = {"inputs": 0, "crashes": int(not watchdog), "hangs": int(watchdog)}
    if stuck:
        result["hangs"] = max(result["hangs"], 1)
    findings = workdir / "findings" / name
    result.update(target=name, engine=engine, seconds=round(elapsed, 1), log=str(log_path),
                  findings=sorted(str(p) for p in findings.glob("*")) if findings.exists() else [])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__)
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"default: all ({', '.join(TARGETS)})")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "120")),
                        help="per target (default: $FUZZ_SECONDS or 120)")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"],
                        default=os.environ.get("FUZZ_ENGINE", "auto"))
    parser.add_argument("--hang-seconds", type=float, default=HANG_SECONDS,
                        help="an input running longer is a hang")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".fuzz",
                        help="corpus, findings and logs (default: .fuzz)")
    parser.add_argument("--max-len", type=int, default=8192, help="atheris: the longest input")
    args = parser.parse_args()
    unknown = [name for name in args.targets if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)} (targets: {', '.join(TARGETS)})")
    engine = _engine(args.engine)
    names = args.targets or list(TARGETS)
    print(f"fuzzing {len(names)} targets for {args.seconds} s each with {engine}"
          f" (hang: an input over {args.hang_seconds} s); work dir {args.workdir}", flush=True)
    results = []
    for name in names:
        result = run_target(name, engine, args.seconds, args.hang_seconds, args.workdir.resolve(),
                            args.max_len)
        results.append(result)
        print(f"  {name:<18} {result['inputs']:>10,} inputs  {result['crashes']} crashes"
              f"  {result['hangs']} hangs  {result['seconds']:>7.1f} s", flush=True)
        for path in result["findings"]:
            print(f"      finding: {path}")
    total = {k: sum(r[k] for r in results) for k in ("inputs", "crashes", "hangs")}
    print(f"  {'total':<18} {total['inputs']:>10,} inputs  {total['crashes']} crashes"
          f"  {total['hangs']} hangs")
    (args.workdir / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    return 1 if total["crashes"] or total["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
