"""What every fuzz target shares: the verdicts, the per-input time limit, reading parameters
from an input's bytes, comparing twins, and the hypothesis engine.

A target is a module of this package (one per decoder) with:

    NAME                    its name on the command line and in reports
    seeds() -> list[bytes]  valid inputs (real frames, header blocks, requests): the corpus
    check(data: bytes)      runs one input; raises Finding on a crash (an exception the
                            callers do not expect) or when the compiled code and its twin
                            disagree
    structured()            optional: a hypothesis strategy of inputs built field by field
    close()                 optional: releases what the target started (a twin process)

Inputs are plain bytes whatever the engine: atheris mutates them under coverage, hypothesis
draws them (mutated seeds, structured inputs, random bytes). A target reads its parameters
(limits, chunk sizes) from the first bytes, so one input replays exactly.
"""
from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType

HANG_SECONDS = 1.0  # an input running longer than this is a hang


class Finding(AssertionError):
    """A crash: an exception the decoder's callers do not expect, or twins that disagree."""


class HangFound(Finding):
    """An input that ran longer than the per-input limit."""


class _Alarm(BaseException):
    """Raised by the timer inside the input (a BaseException: no ``except Exception`` in the
    code under test swallows it); run_one turns it into HangFound."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupts the block after ``seconds`` (SIGALRM; main thread only, else no limit).
    Compiled code is interrupted when it returns to the interpreter: a loop that never
    returns is left to the runner's watchdog (faulthandler in the worker process)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _Alarm()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_one(target: ModuleType, data: bytes, hang_seconds: float | None = HANG_SECONDS) -> None:
    """One input through the target's check, under the time limit. Raises Finding."""
    start = time.monotonic()
    try:
        with time_limit(hang_seconds):
            target.check(data)
    except _Alarm:
        raise HangFound(f"{target.NAME}: input ran longer than {hang_seconds} s") from None
    elapsed = time.monotonic() - start
    if hang_seconds and elapsed > hang_seconds:  # compiled code that held on past the alarm
        raise HangFound(f"{target.NAME}: input took {elapsed:.2f} s (limit {hang_seconds} s)")


# -- reading an input ------------------------------------------------------------------------

class Params:
    """Reads parameters from the front of an input; past its end every read is 0."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def pick(self, choices):
        return choices[self.byte() % len(choices)]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out

    def left(self) -> int:
        return len(self.data) - self.pos


def chunk_sizes(total: int, seed: int, empty: bool = True) -> list[int]:
    """How a stream of ``total`` bytes arrives: sizes drawn from ``seed`` (mostly small pieces,
    some whole runs, empty reads when ``empty``); seed 0 is one piece. The sizes add up to
    total."""
    if seed == 0:
        return [total]
    rng = random.Random(seed)
    sizes: list[int] = []
    left = total
    while left > 0:
        r = rng.random()
        if r < 0.05 and empty:
            n = 0
        elif r < 0.5:
            n = rng.randint(1, 10)
        elif r < 0.85:
            n = rng.randint(1, 200)
        else:
            n = left
        n = min(n, left)
        sizes.append(n)
        left -= n
    return sizes or [0]


def pieces(data: bytes, seed: int, empty: bool = True) -> list[bytes]:
    out, pos = [], 0
    for n in chunk_sizes(len(data), seed, empty):
        out.append(data[pos:pos + n])
        pos += n
    return out


# -- verdicts --------------------------------------------------------------------------------

def _short(value: object, limit: int = 400) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def outcome(what: str, fn: Callable, *args, allowed: tuple[type[BaseException], ...] = ()):
    """("ok", result) or ("error", class name, message) for an allowed exception; any other
    exception is a Finding."""
    try:
        return ("ok", fn(*args))
    except allowed as e:
        return ("error", type(e).__name__, str(e))
    except _Alarm:
        raise
    except Exception as e:
        raise Finding(f"{what}: unexpected {type(e).__name__}: {e}") from e


def agree(compiled: object, pure: object, what: str, names: tuple[str, str] = ("compiled", "pure")
          ) -> None:
    """The compiled code and its twin (or the code and a model of it) must give the same
    results."""
    if compiled != pure:
        raise Finding(f"twins disagree on {what}:\n  {names[0]}: {_short(compiled)}\n"
                      f"  {names[1]}: {_short(pure)}")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Finding(message)


# -- the hypothesis engine -------------------------------------------------------------------

@dataclass
class Stats:
    target: str
    engine: str
    inputs: int = 0
    crashes: int = 0
    hangs: int = 0
    seconds: float = 0.0
    findings: list[str] = field(default_factory=list)  # what failed, with the input

    def as_dict(self) -> dict:
        return {"target": self.target, "engine": self.engine, "inputs": self.inputs,
                "crashes": self.crashes, "hangs": self.hangs, "seconds": round(self.seconds, 1),
                "findings": self.findings}


def mutated(seeds: list[bytes]):
    """A hypothesis strategy: a seed with a few byte-level mutations (set, flip, insert,
    delete, truncate, splice with another seed, boundary values)."""
    from hypothesis import strategies as st

    @st.composite
    def strategy(draw):
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 4))):
            op = draw(st.integers(0, 6))
            n = len(data)
            if op == 0 and n:
                data[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
            elif op == 1 and n:
                data[draw(st.integers(0, n - 1))] ^= 1 << draw(st.integers(0, 7))
            elif op == 2:
                i = draw(st.integers(0, n))
                data[i:i] = draw(st.binary(max_size=16))
            elif op == 3 and n:
                i = draw(st.integers(0, n - 1))
                del data[i:draw(st.integers(i, min(n, i + 32)))]
            elif op == 4:
                del data[draw(st.integers(0, n)):]
            elif op == 5:
                other = draw(st.sampled_from(seeds))
                data[draw(st.integers(0, n)):] = other[draw(st.integers(0, len(other))):]
            elif op == 6 and n:
                i = draw(st.integers(0, n - 1))
                value = draw(st.sampled_from([b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff",
                                              b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff",
                                              b"\xff\xff\xff\xff", b"\x80\x00\x00\x00"]))
                data[i:i + len(value)] = value
        return bytes(data)

    return strategy()


def inputs_strategy(target: ModuleType):
    """What hypothesis draws for a target: mutated seeds, its structured inputs if it has
    them, and random bytes."""
    from hypothesis import strategies as st

    parts = [mutated(target.seeds())]
    structured = getattr(target, "structured", None)
    if structured is not None:
        parts.append(structured())
    parts.append(st.binary(max_size=512))
    return st.one_of(*parts)


def _finding_in(error: BaseException) -> Finding | None:
    """The Finding hypothesis raised, itself or inside a group (a flaky failure: one that did
    not fail again when replayed, as a hang may not)."""
    if isinstance(error, Finding):
        return error
    for inner in getattr(error, "exceptions", ()):
        found = _finding_in(inner)
        if found is not None:
            return found
    return None


def run_hypothesis(target: ModuleType, seconds: float, hang_seconds: float | None = HANG_SECONDS,
                   stop_on_finding: bool = True) -> Stats:
    """Fuzzes ``target`` with hypothesis for about ``seconds``: batches of examples until the
    time is up. A failing input is shrunk by hypothesis and recorded (with its repr) in
    ``findings``; with ``stop_on_finding`` the run ends there."""
    from hypothesis import HealthCheck, Phase, given, settings

    stats = Stats(target.NAME, "hypothesis")
    strategy = inputs_strategy(target)
    last_failure: list[bytes] = []

    def one(data: bytes) -> None:
        stats.inputs += 1
        try:
            run_one(target, data, hang_seconds)
        except Finding:
            last_failure[:] = [data]
            raise

    start = time.monotonic()
    end = start + seconds
    batch = 50
    while True:
        now = time.monotonic()
        if now >= end:
            break
        before = stats.inputs
        test = settings(max_examples=batch, deadline=None, database=None, derandomize=False,
                        suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
                        report_multiple_bugs=False)(given(strategy)(one))
        try:
            test()
        except Exception as error:
            e = _finding_in(error)
            if e is None:
                raise
            if isinstance(e, HangFound):
                stats.hangs += 1
            else:
                stats.crashes += 1
            failing = last_failure[0] if last_failure else b""
            stats.findings.append(f"{e}\n  input: {failing!r}")
            if stop_on_finding:
                break
        # size the next batch to what is left (the rate of this one)
        spent = time.monotonic() - now
        rate = (stats.inputs - before) / spent if spent > 0 else 1000.0
        batch = max(10, min(5000, int(rate * (end - time.monotonic()))))
    stats.seconds = time.monotonic() - start
    return stats
