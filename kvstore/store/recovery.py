"""What recovery checks before it serves: the data dir holds everything it says it holds, and
the revision never goes backwards across restarts.

A member's own log must reach back to the record after its snapshot (trimming never drops past
it) and forward to the newest record the member had applied at its last clean stop (recorded
then, in the member's storage). A replicated log is not the member's alone to account for;
there only the revision is checked. Anything short is a DataDirCorrupt: refusing to start is
better than serving a state with acknowledged writes missing.
"""
from __future__ import annotations

import logging
import struct
from typing import NamedTuple

from ..log import DataDirCorrupt, MemberStorage, SharedLog

logger = logging.getLogger(__name__)

STOPPED_KEY = "stopped"
_STOPPED = struct.Struct(">QQ")


class Stop(NamedTuple):
    """Where the member was at its last clean stop."""
    applied_index: int
    revision: int


def last_stop(storage: MemberStorage) -> Stop:
    raw = storage.get_meta(STOPPED_KEY)
    return Stop(*_STOPPED.unpack(raw)) if raw else Stop(0, 0)


def record_stop(storage: MemberStorage, stop: Stop) -> None:
    """Best effort (a full disk must not turn a stop into a crash): without it, a restart
    checks against the previous stop's record."""
    if storage.durable:
        try:
            storage.put_meta(STOPPED_KEY, _STOPPED.pack(*stop))
        except OSError as e:
            logger.warning("could not record this stop (applied index %d, revision %d): %s",
                           stop.applied_index, stop.revision, e)


def check_log_covers(log: SharedLog, snapshot_index: int, stop: Stop) -> None:
    """Before replay: the member's own log holds every record from ``snapshot_index + 1`` to
    the newest one it applied before."""
    held = log.held()
    if held is None:
        return
    first, last = held
    if first > last:  # no records: trimming keeps the newest, so there was never any state
        if snapshot_index or stop.applied_index:
            raise no_records(log.name, max(snapshot_index, stop.applied_index))
        return
    if first > snapshot_index + 1:
        covered = (f"the newest snapshot covers only through {snapshot_index}" if snapshot_index
                   else "there is no snapshot")
        raise DataDirCorrupt(f"{log.name}: starts at record {first}, but {covered}: records "
                             f"{snapshot_index + 1} to {first - 1} are missing")
    if last < snapshot_index:
        raise DataDirCorrupt(f"{log.name}: ends at record {last}, before the snapshot at "
                             f"{snapshot_index}: its newest records are missing")
    if last < stop.applied_index:
        raise DataDirCorrupt(f"{log.name}: ends at record {last}, but this member had applied "
                             f"through {stop.applied_index} at its last clean stop: its newest "
                             f"records are missing")


def no_records(name: str, applied: int) -> DataDirCorrupt:
    return DataDirCorrupt(f"{name}: holds no records, but this member applied through log "
                          f"index {applied}")


def check_revision(log: SharedLog, revision: int, stop: Stop) -> None:
    """After replay: the revision is at least what it was at the last clean stop."""
    if revision < stop.revision:
        raise DataDirCorrupt(f"{log.name}: recovery reached revision {revision}, below "
                             f"{stop.revision} at the last clean stop: the revision would go "
                             f"backwards")
