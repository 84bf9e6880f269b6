"""What a Store is configured with: one place for the defaults (the server's flags take theirs
from here)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..limits import DEFAULT_MAX_REQUEST_BYTES
from ..mvcc.lease import DEFAULT_MIN_TTL


@dataclass
class StoreConfig:
    name: str = "default"  # the member's name
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_txn_ops: int = 128
    snapshot_count: int = 100_000  # etcd's default --snapshot-count: applied entries between snapshots
    etcd_version: str = "3.5.21"  # reported by Maintenance.Status and /version
    client_urls: list[str] = field(default_factory=list)  # advertised in MemberList
    peer_urls: list[str] = field(default_factory=list)  # advertised in MemberList
    progress_notify_interval: float = 600.0  # etcd's 10 minutes
    min_lease_ttl: int = DEFAULT_MIN_TTL
    # etcd's --quota-backend-bytes: 0 is its default (2 GiB), negative no quota (quota.py).
    quota_backend_bytes: int = 0
    # Members of one cluster share a log and report one cluster id, derived from this name;
    # None: a single member, whose cluster id is drawn once.
    cluster_name: str | None = None
    # Auth: etcd's --auth-token (simple, or jwt,...), --auth-token-ttl (simple tokens' idle
    # lifetime, seconds), --bcrypt-cost; client certificates' common names are users with
    # --client-cert-auth.
    auth_token: str = "simple"
    auth_token_ttl: float = 300.0
    bcrypt_cost: int = 10
    client_cert_auth: bool = False
    # False for a mirror of another store (kvstore migrate): the source's lease expiries reach
    # it as the source's deletes, so its own clock must expire nothing.
    lease_expiry: bool = True
