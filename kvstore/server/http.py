"""etcd's plain HTTP endpoints on the client URL: /health, /version, /metrics.

Transport-independent: ``respond(method, path)`` returns (status, content type, body).
"""
from __future__ import annotations

import json

from ..api import rpc_pb2 as pb
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics


class HttpEndpoints:
    def __init__(self, store, cluster_version: str = "3.5.0", client_requests=None,
                 partition: str | None = None):
        self.store = store
        self.cluster_version = cluster_version
        # /metrics; a partition's worker labels its series with its partition (kvstore serve --profile)
        self.metrics = Metrics(store, client_requests, partition, cluster_version)

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
            return 200, METRICS_CONTENT_TYPE, self.metrics.exposition()
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"
