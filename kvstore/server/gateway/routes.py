"""The paths etcd 3.4's grpc-gateway answers, and the gRPC method behind each.

etcd's .proto files carry them as ``google.api.http`` options (rpc.pb.gw.go, v3lock.pb.gw.go,
v3election.pb.gw.go); ours have those options stripped, so the table is written out here.
Every path is served under ``/v3/`` and ``/v3beta/`` (etcd 3.4; ``/v3alpha/`` is gone), all
with POST. HashKV has no path (``/v3/maintenance/hash`` is Hash's).
"""
from __future__ import annotations

PREFIXES = ("/v3/", "/v3beta/")

ROUTES: dict[str, tuple[str, str]] = {
    "kv/range": ("etcdserverpb.KV", "Range"),
    "kv/put": ("etcdserverpb.KV", "Put"),
    "kv/deleterange": ("etcdserverpb.KV", "DeleteRange"),
    "kv/txn": ("etcdserverpb.KV", "Txn"),
    "kv/compaction": ("etcdserverpb.KV", "Compact"),
    "watch": ("etcdserverpb.Watch", "Watch"),
    "lease/grant": ("etcdserverpb.Lease", "LeaseGrant"),
    "lease/revoke": ("etcdserverpb.Lease", "LeaseRevoke"),
    "kv/lease/revoke": ("etcdserverpb.Lease", "LeaseRevoke"),
    "lease/keepalive": ("etcdserverpb.Lease", "LeaseKeepAlive"),
    "lease/timetolive": ("etcdserverpb.Lease", "LeaseTimeToLive"),
    "kv/lease/timetolive": ("etcdserverpb.Lease", "LeaseTimeToLive"),
    "lease/leases": ("etcdserverpb.Lease", "LeaseLeases"),
    "kv/lease/leases": ("etcdserverpb.Lease", "LeaseLeases"),
    "cluster/member/add": ("etcdserverpb.Cluster", "MemberAdd"),
    "cluster/member/remove": ("etcdserverpb.Cluster", "MemberRemove"),
    "cluster/member/update": ("etcdserverpb.Cluster", "MemberUpdate"),
    "cluster/member/list": ("etcdserverpb.Cluster", "MemberList"),
    "cluster/member/promote": ("etcdserverpb.Cluster", "MemberPromote"),
    "maintenance/alarm": ("etcdserverpb.Maintenance", "Alarm"),
    "maintenance/status": ("etcdserverpb.Maintenance", "Status"),
    "maintenance/defragment": ("etcdserverpb.Maintenance", "Defragment"),
    "maintenance/hash": ("etcdserverpb.Maintenance", "Hash"),
    "maintenance/snapshot": ("etcdserverpb.Maintenance", "Snapshot"),
    "maintenance/transfer-leadership": ("etcdserverpb.Maintenance", "MoveLeader"),
    "auth/enable": ("etcdserverpb.Auth", "AuthEnable"),
    "auth/disable": ("etcdserverpb.Auth", "AuthDisable"),
    "auth/authenticate": ("etcdserverpb.Auth", "Authenticate"),
    "auth/user/add": ("etcdserverpb.Auth", "UserAdd"),
    "auth/user/get": ("etcdserverpb.Auth", "UserGet"),
    "auth/user/list": ("etcdserverpb.Auth", "UserList"),
    "auth/user/delete": ("etcdserverpb.Auth", "UserDelete"),
    "auth/user/changepw": ("etcdserverpb.Auth", "UserChangePassword"),
    "auth/user/grant": ("etcdserverpb.Auth", "UserGrantRole"),
    "auth/user/revoke": ("etcdserverpb.Auth", "UserRevokeRole"),
    "auth/role/add": ("etcdserverpb.Auth", "RoleAdd"),
    "auth/role/get": ("etcdserverpb.Auth", "RoleGet"),
    "auth/role/list": ("etcdserverpb.Auth", "RoleList"),
    "auth/role/delete": ("etcdserverpb.Auth", "RoleDelete"),
    "auth/role/grant": ("etcdserverpb.Auth", "RoleGrantPermission"),
    "auth/role/revoke": ("etcdserverpb.Auth", "RoleRevokePermission"),
    "lock/lock": ("v3lockpb.Lock", "Lock"),
    "lock/unlock": ("v3lockpb.Lock", "Unlock"),
    "election/campaign": ("v3electionpb.Election", "Campaign"),
    "election/proclaim": ("v3electionpb.Election", "Proclaim"),
    "election/leader": ("v3electionpb.Election", "Leader"),
    "election/observe": ("v3electionpb.Election", "Observe"),
    "election/resign": ("v3electionpb.Election", "Resign"),
}


def served(path: str) -> bool:
    """Whether the gateway (not the plain endpoints) answers ``path``: under a prefix, or the
    bare ``/v3`` that Go's ServeMux redirects to ``/v3/``."""
    return path == "/v3" or path.startswith(PREFIXES)


def find(path: str) -> tuple[str, str] | None:
    """(service, method) of a path the gateway serves, or None (its 404)."""
    for prefix in PREFIXES:
        if path.startswith(prefix):
            return ROUTES.get(path[len(prefix):])
    return None


def clean_path(path: str) -> str:
    """Go's ServeMux cleanPath: "." and ".." resolved, slashes single, a trailing one kept."""
    if not path:
        return "/"
    if path[0] != "/":
        path = "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    cleaned = "/" + "/".join(parts)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned
