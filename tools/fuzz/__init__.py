"""Fuzzing kvstore's decoders of what clients send, each compiled decoder against its twin.

Targets (one module each): h2_frames (the HTTP/2 frame reader), hpack (the HPACK decoder,
module hpack_decoder), grpc_framing (gRPC's length-prefixed messages on a stream),
etcd_requests (protobuf parsing of etcd's requests and the store's checks), server_connection
(a whole server connection in memory, bytes in and bytes out). harness.py says what a target
is and what counts as a crash or a hang.

    python -m tools.fuzz [--seconds N] [--engine auto|atheris|hypothesis] [TARGET ...]

runs each target for N seconds in a worker process of its own and prints, per target, the
inputs run, crashes and hangs (``make fuzz``; tests/test_fuzz.py runs a short budget of each
in the test suite). atheris, where it is installed (the test extra), fuzzes under coverage;
else hypothesis does.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# target name -> module
TARGETS = {
    "h2_frames": "h2_frames",
    "hpack": "hpack_decoder",
    "grpc_framing": "grpc_framing",
    "etcd_requests": "etcd_requests",
    "server_connection": "server_connection",
}


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{TARGETS[name]}")
