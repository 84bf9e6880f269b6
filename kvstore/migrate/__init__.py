"""``kvstore migrate``: a running etcd moved onto kvstore without downtime (docs/migration.md).

copy.py takes a consistent copy of the source at one revision (its own snapshot, restored with
every key's revisions, versions and leases, and its history); mirror.py then applies the
source's later revisions to the copy, one for one, until cut-over; verify.py compares both
sides key by key at one revision.
"""
from .copy import MARKER, MigrationRefused, copy_from, read_marker
from .mirror import Compacted, Diverged, Mirror
from .verify import Comparison, compare, store_reads

__all__ = ["MARKER", "Comparison", "Compacted", "Diverged", "MigrationRefused", "Mirror", "compare",
           "copy_from", "read_marker", "store_reads"]
