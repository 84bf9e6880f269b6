"""etcd's plain HTTP endpoints on the client URL: /health, /version, /metrics.

Transport-independent: ``respond(method, path)`` returns (status, content type, body).
"""
from __future__ import annotations

import json

from ..api import rpc_pb2 as pb


class HttpEndpoints:
    def __init__(self, store, cluster_version: str = "3.5.0", client_requests=None,
                 partition: str | None = None):
        self.store = store
        # A partition's worker labels every series with its partition (kvstore serve --profile).
        self.label = f'partition="{_label(partition)}"' if partition else ""
        self.cluster_version = cluster_version
        self.client_requests = client_requests  # {(call type, client api version): calls}

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"Method Not Allowed\n"
        if path in ("/health", "/livez", "/readyz"):
            ok = self.store.healthy()
            alarms = " ".join(f"ALARM {pb.AlarmType.Name(a)}" for a in sorted(self.store.alarms))
            body = {"health": "true" if ok else "false",
                    "reason": "" if ok else alarms or "store stopped"}
            return (200 if ok else 503), "application/json", json.dumps(body, separators=(",", ":")).encode()
        if path == "/version":
            body = {"etcdserver": self.store.etcd_version, "etcdcluster": self.cluster_version}
            return 200, "application/json", json.dumps(body, separators=(",", ":")).encode()
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics().encode()
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"

    def metrics(self) -> str:
        s = self.store
        rows = [
            ("etcd_server_has_leader", "gauge", "Whether or not a leader exists.", int(s.has_leader())),
            ("etcd_server_is_leader", "gauge", "Whether or not this member is a leader.", int(s.lessor.is_leader)),
            ("etcd_mvcc_db_total_size_in_bytes", "gauge", "Total size of the underlying database.", s.db_size()),
            ("etcd_debugging_mvcc_current_revision", "gauge", "The current revision of store.", s.mvcc.current_rev),
            ("etcd_debugging_mvcc_compact_revision", "gauge", "The revision of the last compaction.", s.mvcc.compact_rev),
            ("etcd_debugging_mvcc_keys_total", "gauge", "Total number of keys.", len(s.mvcc.index)),
            ("etcd_debugging_mvcc_watcher_total", "gauge", "Total number of watchers.", len(s.watch_hub)),
            ("etcd_debugging_mvcc_slow_watcher_total", "gauge", "Total number of unsynced slow watchers.", s.watch_hub.unsynced_count),
            ("etcd_debugging_lease_total", "gauge", "Number of leases.", len(s.leases.leases)),
            ("kvstore_log_appends_total", "counter", "Log appends (one fsync each on a durable log).", s.log_appends()),
            ("kvstore_log_entries_total", "counter", "Entries appended to the log.", s.log_entries()),
            ("kvstore_applied_index", "gauge", "Index of the last applied log entry.", s.applied_index),
        ]
        out = []
        own = f"{{{self.label}}}" if self.label else ""
        for name, kind, help_text, value in rows:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{name}{own} {value}\n")
        if self.client_requests is not None:
            name = "etcd_server_client_requests_total"
            out.append(f"# HELP {name} The total number of client requests per client version.\n"
                       f"# TYPE {name} counter\n")
            for (call_type, version), n in sorted(self.client_requests.items()):
                labels = f'client_api_version="{_label(version)}",type="{call_type}"'
                if self.label:
                    labels = f"{self.label},{labels}"
                out.append(f"{name}{{{labels}}} {n}\n")
        return "".join(out)


def _label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")
