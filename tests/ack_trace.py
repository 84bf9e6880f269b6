"""Reads an strace of a kvstore server and checks that no write was acknowledged before it was
durable: for every marked write, the send that acknowledges it starts after a sync that covers
its log record (in a write-ahead file, or in LMDB's file together with the LMDB meta page that
makes that record's transaction current).

The trace is made with ``strace -f -ttt -T -yy -s BIG -o FILE`` (every thread; start time in
seconds; duration; file descriptors annotated with their path or socket). A marked write is a
request whose bytes hold a unique marker that its response echoes (a Txn that puts a value and
reads it back), so the marker appears in the log's write and in the acknowledgement.

What counts, on the log's write-ahead files (``.../log/wal.0``, ``.../log/wal.1``):
- a *write-ahead write*: any write call;
- a sync of that file: fsync/fdatasync on it.
On LMDB's data file (``.../log/data.mdb``):
- a *data write*: pwrite64/pwritev at an offset past LMDB's two meta pages, or write/writev;
- a *meta write*: pwrite64 at an offset within the first two pages (LMDB's meta pages);
- a *sync*: fsync/fdatasync on the file (msync: any), or a write on a descriptor opened with
  O_DSYNC or O_SYNC (LMDB's meta-page descriptor when meta sync is on), which syncs itself.

For marker m, A is the first send on a TCP socket holding m, and W the first write holding m
on either file. On a write-ahead file, S is the first sync of that file that starts after W
ends. On LMDB's file, M is the first meta write that starts after W ends (that commit's meta
page) and S the first sync that starts after M ends (or M itself on a syncing descriptor). The
check: A starts after S ends.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

META_PAGES_BYTES = 2 * 4096  # LMDB's two meta pages (the page size is the OS page, 4 KiB)

_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<ts>\d+\.\d+)\s+(?P<rest>.*)$")
_RESUMED = re.compile(r"^<\.\.\. (?P<name>\w+) resumed>(?P<rest>.*)$")
_CALL = re.compile(r"^(?P<name>\w+)\((?P<rest>.*)$")
_DURATION = re.compile(r"<(?P<dur>\d+\.\d+)>\s*$")
_FD = re.compile(r"^(?P<fd>-?\d+)<(?P<path>[^>]*)>")
_OFFSET = re.compile(r",\s*(?P<off>\d+)\)\s*=")
_RESULT = re.compile(r"\)\s*=\s*(?P<ret>-?\d+)")
_UNFINISHED = "<unfinished ...>"

DATA_FILE_SUFFIX = "/log/data.mdb"
WAL_FILE_SUFFIXES = ("/log/wal.0", "/log/wal.1")
WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
SYNCS = {"fsync", "fdatasync", "msync"}
SENDS = {"sendto", "sendmsg", "write", "writev", "send", "sendmmsg"}


@dataclass
class Call:
    pid: int
    name: str
    start: float
    text: str = ""  # the whole call, arguments and result
    end: float | None = None
    fd: int | None = None
    path: str = ""

    @property
    def offset(self) -> int | None:
        m = _OFFSET.search(self.text)
        return int(m.group("off")) if m else None

    @property
    def ok(self) -> bool:
        m = _RESULT.search(self.text)
        return m is not None and int(m.group("ret")) >= 0


def parse(lines) -> list[Call]:
    """Completed calls in order of their start, unfinished/resumed halves joined."""
    calls: list[Call] = []
    open_calls: dict[tuple[int, str], Call] = {}
    for line in lines:
        m = _LINE.match(line.rstrip("\n"))
        if not m:
            continue
        pid, ts, rest = int(m.group("pid")), float(m.group("ts")), m.group("rest")
        resumed = _RESUMED.match(rest)
        if resumed:
            call = open_calls.pop((pid, resumed.group("name")), None)
            if call is None:
                continue
            call.text += resumed.group("rest")
        else:
            c = _CALL.match(rest)
            if not c:
                continue  # signals, exits
            unfinished = rest.endswith(_UNFINISHED)
            args = c.group("rest")
            if unfinished:  # the arguments so far; the resumed half brings ") = result"
                args = args[:-len(_UNFINISHED)].rstrip()
            call = Call(pid, c.group("name"), ts, args)
            fd = _FD.match(call.text)
            if fd:
                call.fd, call.path = int(fd.group("fd")), fd.group("path")
            if unfinished:
                open_calls[(pid, call.name)] = call
                calls.append(call)
                continue
            calls.append(call)
        d = _DURATION.search(call.text)
        call.end = call.start + (float(d.group("dur")) if d else 0.0)
    calls = [c for c in calls if c.end is not None]
    calls.sort(key=lambda c: c.start)
    return calls


@dataclass
class Durability:
    """The log files' writes and syncs, and the sends on sockets, from one trace."""
    wal_writes: list[Call] = field(default_factory=list)
    wal_syncs: list[Call] = field(default_factory=list)
    data_writes: list[Call] = field(default_factory=list)
    meta_writes: list[Call] = field(default_factory=list)
    syncs: list[Call] = field(default_factory=list)
    sends: list[Call] = field(default_factory=list)

    @classmethod
    def of(cls, calls: list[Call]) -> Durability:
        d = cls()
        syncing_fds: set[int] = set()  # opened with O_DSYNC/O_SYNC on the data file
        for c in calls:
            if c.name in ("openat", "open") and DATA_FILE_SUFFIX in c.text:
                ret = re.search(r"=\s*(\d+)", c.text.rsplit(")", 1)[-1])
                if ret and ("O_DSYNC" in c.text or "O_SYNC" in c.text):
                    syncing_fds.add(int(ret.group(1)))
                continue
            if c.name == "close" and c.fd is not None:
                syncing_fds.discard(c.fd)
                continue
            if not c.ok:
                continue
            if c.path.endswith(WAL_FILE_SUFFIXES):
                if c.name in WRITES:
                    d.wal_writes.append(c)
                elif c.name in SYNCS:
                    d.wal_syncs.append(c)
                continue
            on_data_file = c.path.endswith(DATA_FILE_SUFFIX)
            if on_data_file and c.name in WRITES:
                off = c.offset if c.name.startswith("pwrite") else None
                if off is not None and off < META_PAGES_BYTES:
                    d.meta_writes.append(c)
                else:
                    d.data_writes.append(c)
                if c.fd in syncing_fds:
                    d.syncs.append(c)
            elif c.name in SYNCS and (on_data_file or c.name == "msync"):
                d.syncs.append(c)
            elif c.name in SENDS and c.path.startswith("TCP"):
                d.sends.append(c)
        return d

    def violations(self, markers: list[str]) -> list[str]:
        """What is wrong for each marker; empty when every acknowledgement came after its
        durability."""
        out = []
        for m in markers:
            w = min((c for c in (*self.wal_writes, *self.data_writes) if m in c.text),
                    key=lambda c: c.start, default=None)
            a = next((c for c in self.sends if m in c.text), None)
            if a is None:
                out.append(f"{m}: never acknowledged")
                continue
            if w is None:
                out.append(f"{m}: acknowledged at {a.start:.6f}, never written to the log")
                continue
            if w in self.wal_writes:
                sync = next((c for c in self.wal_syncs
                             if c.path == w.path and c.start >= w.end), None)
                if sync is None or a.start < sync.end:
                    when = "never" if sync is None else f"at {sync.end:.6f}"
                    out.append(f"{m}: acknowledged at {a.start:.6f}, but its write-ahead record "
                               f"written at {w.start:.6f} was synced {when}")
                continue
            meta = next((c for c in self.meta_writes if c.start >= w.end), None)
            if meta is None:
                out.append(f"{m}: acknowledged at {a.start:.6f}, no meta page written after "
                           f"its record ({w.end:.6f})")
                continue
            if meta in self.syncs:  # a syncing descriptor
                sync = meta
            else:
                sync = next((c for c in self.syncs if c.start >= meta.end), None)
            if sync is None or a.start < sync.end:
                when = "never" if sync is None else f"at {sync.end:.6f}"
                out.append(f"{m}: acknowledged at {a.start:.6f}, but the meta page written at "
                           f"{meta.start:.6f} was synced {when}")
        return out
