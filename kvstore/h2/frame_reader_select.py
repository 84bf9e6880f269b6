"""Picks the compiled HTTP/2 frame reader (ext/h2frames.pyx) or its pure-Python twin
(frame_reader.py), and the frames of gRPC responses (h2frames, or frames.py).

The connection takes FrameReader and FrameError from here; ``KVSTORE_NO_EXT=1`` selects the
pure twin. FrameError is one class either way (the compiled module re-exports it), and it is a
frames.ConnectionError_.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _ext
from . import frame_reader as _py_frame_reader, frames as _py_frames

_c = _ext.compiled("h2frames")

if TYPE_CHECKING:
    # mypy reads the types from the compiled module's stub (kvstore/_ext/h2frames.pyi); the
    # pure-Python twin has the same API.
    from .._ext.h2frames import FrameError, FrameReader, grpc_data_frames, response_frames
elif _c is not None:
    FrameReader = _c.FrameReader
    FrameError = _c.FrameError
    grpc_data_frames = _c.grpc_data_frames
    response_frames = _c.response_frames
else:
    FrameReader = _py_frame_reader.FrameReader
    FrameError = _py_frame_reader.FrameError
    grpc_data_frames = _py_frames.grpc_data_frames
    response_frames = _py_frames.response_frames

COMPILED = _c is not None

__all__ = ["FrameReader", "FrameError", "grpc_data_frames", "response_frames", "COMPILED"]
