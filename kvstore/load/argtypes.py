"""argparse types for the load command's numbers."""
from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    n = _number(int, value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {n}")
    return n


def non_negative_int(value: str) -> int:
    n = _number(int, value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {n}")
    return n


def positive_float(value: str) -> float:
    x = _number(float, value)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return x


def _number(kind: type, value: str):
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} {value!r}") from None
