"""The SETTINGS we announce, either side, and when we give receive window back."""
from __future__ import annotations

from . import frames as f

# Large windows: the peer may send a whole request (or response) without waiting for us.
OUR_INITIAL_WINDOW = 4 * 1024 * 1024
OUR_CONNECTION_WINDOW = 16 * 1024 * 1024
OUR_MAX_FRAME = 1024 * 1024
OUR_MAX_CONCURRENT_STREAMS = 10_000
OUR_MAX_HEADER_LIST = 64 * 1024
# Window updates are sent once this much of a window has been consumed.
ACK_THRESHOLD = 64 * 1024


def our_settings() -> bytes:
    """Our SETTINGS frame and the WINDOW_UPDATE that raises the connection window to ours."""
    return f.settings({
        f.MAX_CONCURRENT_STREAMS: OUR_MAX_CONCURRENT_STREAMS,
        f.INITIAL_WINDOW_SIZE: OUR_INITIAL_WINDOW,
        f.MAX_FRAME_SIZE: OUR_MAX_FRAME,
        f.MAX_HEADER_LIST_SIZE: OUR_MAX_HEADER_LIST,
        f.ENABLE_PUSH: 0,
    }) + f.window_update(0, OUR_CONNECTION_WINDOW - f.DEFAULT_WINDOW)
