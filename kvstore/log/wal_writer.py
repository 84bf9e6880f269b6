"""The write-ahead file's appends on a thread of their own: pure-Python twin of
ext/wal_writer.pyx (that one's thread never takes the GIL; wal_writer_select.py picks).

The event loop hands the thread one write at a time (pwrite, then fdatasync) and hears it is
done through an eventfd it watches like a socket; ``take`` gives the result.
"""
from __future__ import annotations

import errno
import os
import threading
import time

# What failed, in a result: nothing; the write (nothing written, the errno says why); the write
# cut short (what it wrote of the header is zeroed again); the sync (or the zeroing).
OK = 0
WRITE_FAILED = 1
WRITE_SHORT = 2
SYNC_FAILED = 3
HEADER_BYTES = 16  # zeroed at the start of a record cut short: its header


class WalWriter:
    """Writes and syncs one buffer at a time on its own thread."""

    def __init__(self) -> None:
        self._event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake = threading.Condition()
        self._job: tuple[int, bytes, int] | None = None
        self._result: tuple[int, int, float] | None = None
        self._stop = False
        self._in_flight = False
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="wal-writer", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        """Readable when a write's result is ready (an eventfd)."""
        return self._event_fd

    def submit(self, fd: int, data: bytes, offset: int) -> None:
        """Writes ``data`` at ``offset`` of ``fd`` and syncs it, on the thread."""
        if self._thread is None:
            raise RuntimeError("wal writer closed")
        if self._in_flight:
            raise RuntimeError("a write is in flight")
        self._in_flight = True
        with self._wake:
            self._job = (fd, data, offset)
            self._wake.notify()

    def take(self) -> tuple[int, int, float] | None:
        """The finished write's (outcome, errno, seconds), or None if it is not finished."""
        if not self._in_flight:
            return None
        try:
            os.eventfd_read(self._event_fd)
        except BlockingIOError:
            return None
        with self._wake:
            result, self._result = self._result, None
        self._in_flight = False
        return result

    def close(self) -> None:
        """Finishes the write in flight, then stops the thread."""
        if self._thread is not None:
            with self._wake:
                self._stop = True
                self._wake.notify()
            self._thread.join()
            self._thread = None
        if self._event_fd >= 0:
            os.close(self._event_fd)
            self._event_fd = -1

    def _run(self) -> None:
        # Woken by the disk, the thread waits for the event loop's thread instead of preempting
        # it (ext/wal_writer.pyx says why); 0 is the calling thread. A refusal is harmless.
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            pass
        while True:
            with self._wake:
                while self._job is None and not self._stop:
                    self._wake.wait()
                job = self._job
                if job is None:
                    return
            result = _write_and_sync(*job)
            with self._wake:
                self._job = None
                self._result = result
            os.eventfd_write(self._event_fd, 1)


def _write_and_sync(fd: int, data: bytes, offset: int) -> tuple[int, int, float]:
    began = time.monotonic()
    outcome, err = OK, 0
    try:
        written = os.pwrite(fd, data, offset)
    except OSError as e:
        outcome, err = WRITE_FAILED, e.errno or errno.EIO
    else:
        try:
            if written != len(data):
                outcome = WRITE_SHORT
                os.pwrite(fd, bytes(min(written, HEADER_BYTES)), offset)
            else:
                os.fdatasync(fd)
        except OSError as e:
            outcome, err = SYNC_FAILED, e.errno or errno.EIO
    return outcome, err, time.monotonic() - began
