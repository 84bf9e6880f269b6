# Stub of the compiled module built from ext/h2frames.pyx. Its pure-Python twin, with the same
# API: kvstore/h2/frame_reader.py (which defines FrameError, re-exported here).
from typing import SupportsIndex

from _typeshed import ReadableBuffer

from kvstore.h2.frame_reader import FrameError as FrameError

HEADER_SIZE: int

__all__ = ["FrameReader", "FrameError", "HEADER_SIZE", "grpc_data_frames"]

def grpc_data_frames(stream_id: int, messages: list[bytes], size: int, max_frame: int) -> bytes: ...

class FrameReader:
    def __init__(self, max_frame_size: SupportsIndex) -> None: ...
    @property
    def max_frame_size(self) -> int: ...
    @max_frame_size.setter
    def max_frame_size(self, value: SupportsIndex) -> None: ...
    def buffered(self) -> int: ...
    def feed(self, data: ReadableBuffer) -> tuple[list[tuple[int, int, int, bytes]], FrameError | None]: ...
