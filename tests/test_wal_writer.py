"""The write-ahead files' writer thread, compiled (ext/wal_writer.pyx) and its pure twin
(kvstore/log/wal_writer.py): the same writes give the same bytes on disk and the same results,
failures included, and the thread runs as SCHED_BATCH."""
from __future__ import annotations

import errno
import os
import resource
import select
from pathlib import Path

import pytest

# The compiled module must be built (make test installs it); a missing build fails here.
import kvstore._ext.wal_writer as compiled
from kvstore.log import wal_writer as pure, wal_writer_select

pytestmark = pytest.mark.inprocess
TWINS = [pytest.param(compiled, id="compiled"), pytest.param(pure, id="pure")]


def test_the_compiled_writer_is_selected_unless_disabled():
    assert wal_writer_select.COMPILED == (os.environ.get("KVSTORE_NO_EXT", "") in ("", "0"))


def finished(writer, timeout: float = 10.0):
    """The result, once the writer's fileno() says it is ready."""
    readable, _, _ = select.select([writer.fileno()], [], [], timeout)
    assert readable, "the write never finished"
    return writer.take()


def outcomes(impl, fd: int, writes: list[tuple[bytes, int]]) -> list[tuple[int, int]]:
    writer = impl.WalWriter()
    try:
        assert writer.take() is None  # nothing in flight
        out = []
        for data, offset in writes:
            writer.submit(fd, data, offset)
            outcome, err, seconds = finished(writer)
            assert 0 <= seconds < 10
            assert writer.take() is None  # taken once
            out.append((outcome, err))
        return out
    finally:
        writer.close()


@pytest.mark.parametrize("impl", TWINS)
def test_writes_land_where_asked_and_are_reported_ok(impl, tmp_path: Path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        writes = [(b"%03d" % i * 7, i * 21) for i in range(40)] + [(b"over", 5)]
        assert outcomes(impl, fd, writes) == [(impl.OK, 0)] * 41
    finally:
        os.close(fd)
    expected = bytearray(b"".join(b"%03d" % i * 7 for i in range(40)))
    expected[5:9] = b"over"
    assert (tmp_path / "f").read_bytes() == expected


@pytest.mark.parametrize("impl", TWINS)
def test_failures_say_which_step_failed_and_why(impl, tmp_path: Path):
    (tmp_path / "ro").write_bytes(b"")
    read_only = os.open(tmp_path / "ro", os.O_RDONLY)
    null = os.open("/dev/null", os.O_WRONLY)  # takes writes; a sync of it is EINVAL
    try:
        assert outcomes(impl, read_only, [(b"x", 0)]) == [(impl.WRITE_FAILED, errno.EBADF)]
        assert outcomes(impl, null, [(b"x", 0)]) == [(impl.SYNC_FAILED, errno.EINVAL)]
    finally:
        os.close(read_only)
        os.close(null)


@pytest.mark.parametrize("impl", TWINS)
def test_a_write_cut_short_by_the_file_size_limit_is_unmade(impl, tmp_path: Path):
    """The bytes written of a record cut short are zeroed (up to its 16-byte header), so no
    trace of its index is left; past the limit nothing is written (EFBIG)."""
    path = tmp_path / "f"
    path.write_bytes(b"\xff" * 8192)
    fd = os.open(path, os.O_RDWR)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192 + 10, limit[1]))  # Python ignores SIGXFSZ
    try:
        got = outcomes(impl, fd, [(b"\x01" * 100, 8192 - 20), (b"\x02" * 8, 8192 + 10)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        os.close(fd)
    assert got == [(impl.WRITE_SHORT, 0), (impl.WRITE_FAILED, errno.EFBIG)]
    data = path.read_bytes()
    assert len(data) == 8192 + 10  # 30 of the 100 bytes were written
    assert data[8192 - 20:8192 - 4] == bytes(16)  # the header's bytes: zeroed again
    assert data[8192 - 4:] == b"\x01" * 14  # the rest of what was written stays


@pytest.mark.parametrize("impl", TWINS)
def test_one_write_at_a_time_and_none_after_close(impl, tmp_path: Path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    writer = impl.WalWriter()
    try:
        writer.submit(fd, b"a", 0)
        with pytest.raises(RuntimeError, match="a write is in flight"):
            writer.submit(fd, b"b", 1)
        assert finished(writer)[0] == impl.OK
        writer.submit(fd, b"c", 1)
        writer.close()  # finishes the write in flight first
        writer.close()
        with pytest.raises(RuntimeError, match="wal writer closed"):
            writer.submit(fd, b"d", 2)
    finally:
        writer.close()
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"ac"


def thread_policies() -> dict[int, int]:
    """This process's threads: id -> scheduling policy (field 41 of /proc/.../stat)."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        stat = (task / "stat").read_text()
        out[int(task.name)] = int(stat[stat.rindex(")") + 2:].split()[38])
    return out


@pytest.mark.parametrize("impl", TWINS)
def test_the_writer_thread_runs_as_sched_batch(impl, tmp_path: Path):
    """So that the disk waking it does not preempt the event loop's thread (the module says
    why)."""
    before = thread_policies()
    writer = impl.WalWriter()
    try:
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
        writer.submit(fd, b"x", 0)  # the thread has set its policy by the time it has written
        assert finished(writer)[0] == impl.OK
        os.close(fd)
        new = {tid: policy for tid, policy in thread_policies().items() if tid not in before}
        assert list(new.values()) == [os.SCHED_BATCH]
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's is unchanged
    finally:
        writer.close()
