"""The NATS names of one kvstore cluster: its stream, subjects and buckets."""
from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Names:
    cluster: str

    def __post_init__(self):
        if not _TOKEN.fullmatch(self.cluster):
            raise ValueError(f"cluster name {self.cluster!r}: use letters, digits, '-' and '_'")

    @property
    def stream(self) -> str:
        return f"KVSTORE_{self.cluster}"

    @property
    def subject(self) -> str:
        return f"kvstore.{self.cluster}.log"

    @property
    def leader_subject(self) -> str:
        """Where the leader answers the other members (keep-alives, lease TTLs)."""
        return f"kvstore.{self.cluster}.leader"

    @property
    def election_bucket(self) -> str:
        return f"kvstore_{self.cluster}_election"

    @property
    def members_bucket(self) -> str:
        return f"kvstore_{self.cluster}_members"

    @property
    def snapshots_bucket(self) -> str:
        return f"kvstore_{self.cluster}_snapshots"
