"""/metrics: etcd's metrics, by etcd's names, types, help texts and buckets, in Prometheus's
text format through prometheus-client.

Nothing here runs per request. Each server has its own CollectorRegistry, and its collectors
read values when /metrics is scraped: from the state the store keeps anyway (revisions, keys,
watchers, leader), from plain int counters the request path bumps (each method's calls,
statuses and bytes in the transport, methods.CallCounts; proposals in the proposer; client
versions in the interceptor) and from the log's disk histograms (kvstore/log/durations.py),
observed once a log append. prometheus-client's own Counter and Histogram objects, which take a
lock per update, are not used on the request path.

The process's own metrics (process_resident_memory_bytes, which `etcdctl check datascale`
reads, process_cpu_seconds_total, process_open_fds, ...) come from prometheus-client's
ProcessCollector. A partition's worker labels every series but those with its partition.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..log.durations import DurationHistogram
from .transport.methods import CODE_NAMES, GRPC_TYPES, CallCounts

# etcd's (Go's promhttp) content type: the classic text format, which generate_latest writes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_CALL_LABELS = ["grpc_method", "grpc_service", "grpc_type"]


class Metrics:
    """A server's /metrics. ``calls``: each gRPC method's CallCounts, from the transport (set
    once the transport exists: ``count_calls``)."""

    def __init__(self, store, client_requests=None, partition: str | None = None,
                 cluster_version: str = "3.5.0"):
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.collector = EtcdCollector(store, client_requests, partition, cluster_version)
        self.registry.register(self.collector)

    def count_calls(self, calls: list[CallCounts]) -> None:
        self.collector.calls = calls

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class EtcdCollector:
    """etcd's series and kvstore's own, read from the store and the transport when scraped."""

    def __init__(self, store, client_requests=None, partition: str | None = None,
                 cluster_version: str = "3.5.0"):
        self.store = store
        self.client_requests = client_requests  # {(call type, client api version): calls}
        self.partition = partition
        self.cluster_version = ".".join(cluster_version.split(".")[:2])  # etcd's label: "3.5"
        self.calls: list[CallCounts] = []

    def collect(self) -> Iterator[Metric]:
        families = [*self._server(), *self._mvcc(), *self._disk(), *self._grpc(), *self._kvstore()]
        if self.partition:
            for family in families:
                family.samples = [s._replace(labels={"partition": self.partition, **s.labels})
                                  for s in family.samples]
        return iter(families)

    def _server(self) -> Iterable[Metric]:
        s = self.store
        held = s.log.held()  # a local log's (first, last); None for a replicated stream
        applied = s.applied_index
        committed = max(held[1], applied) if held is not None else applied
        ident = s.identity
        yield _gauge("etcd_server_has_leader",
                     "Whether or not a leader exists. 1 is existence, 0 is not.", int(s.has_leader()))
        yield _gauge("etcd_server_is_leader",
                     "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                     int(s.lessor.is_leader))
        yield _gauge("etcd_server_is_learner",
                     "Whether or not this member is a learner. 1 if is, 0 otherwise.", 0)
        yield CounterMetricFamily("etcd_server_leader_changes_seen_total",
                                  "The number of leader changes seen.", value=s.leader_changes)
        yield _gauge("etcd_server_proposals_committed_total",
                     "The total number of consensus proposals committed.", committed)
        yield _gauge("etcd_server_proposals_applied_total",
                     "The total number of consensus proposals applied.", applied)
        yield _gauge("etcd_server_proposals_pending",
                     "The current number of pending proposals to commit.", s.proposals_pending())
        yield CounterMetricFamily("etcd_server_proposals_failed_total",
                                  "The total number of failed proposals seen.",
                                  value=s.proposals_failed())
        yield _gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
                     s.quota_bytes)
        if ident is not None:
            yield _labelled_one("etcd_server_id", "Server or member ID in hexadecimal format. 1 "
                                "for 'server_id' label with current ID.", "server_id", f"{ident.member_id:x}")
        yield _labelled_one("etcd_server_version", "Which version is running. 1 for "
                            "'server_version' label with current version.", "server_version", s.etcd_version)
        yield _labelled_one("etcd_cluster_version", "Which version is running. 1 for "
                            "'cluster_version' label with current cluster version", "cluster_version",
                            self.cluster_version)
        if self.client_requests is not None:
            family = CounterMetricFamily("etcd_server_client_requests_total",
                                         "The total number of client requests per client version.",
                                         labels=["client_api_version", "type"])
            for (call_type, version), n in sorted(self.client_requests.items()):
                family.add_metric([version, call_type], n)
            yield family

    def _mvcc(self) -> Iterable[Metric]:
        s = self.store
        status = s.status()  # the sizes Maintenance.Status reports
        total = "Total size of the underlying database physically allocated in bytes."
        yield _gauge("etcd_mvcc_db_total_size_in_bytes", total, status.dbSize)
        yield _gauge("etcd_debugging_mvcc_db_total_size_in_bytes", total, status.dbSize)
        yield _gauge("etcd_mvcc_db_total_size_in_use_in_bytes",
                     "Total size of the underlying database logically in use in bytes.",
                     status.dbSizeInUse)
        yield _gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.",
                     s.mvcc.current_rev)
        yield _gauge("etcd_debugging_mvcc_compact_revision",
                     "The revision of the last compaction in store.", s.mvcc.compact_rev)
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.",
                     s.mvcc.index.live_count())
        yield _gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.",
                     len(s.watch_hub))
        yield _gauge("etcd_debugging_mvcc_slow_watcher_total",
                     "Total number of unsynced slow watchers.", s.watch_hub.unsynced_count)
        yield _gauge("etcd_debugging_lease_total", "Number of leases.", len(s.leases.leases))

    def _disk(self) -> Iterable[Metric]:
        log = self.store.log  # only a log on a local disk times its appends (LMDB)
        yield _histogram("etcd_disk_wal_fsync_duration_seconds",
                         "The latency distributions of fsync called by WAL.",
                         getattr(log, "fsync_durations", None))
        yield _histogram("etcd_disk_backend_commit_duration_seconds",
                         "The latency distributions of commit called by backend.",
                         getattr(log, "commit_durations", None))

    def _grpc(self) -> Iterable[Metric]:
        """go-grpc-prometheus's series, every method with every code from the start, as etcd's
        are; and etcd's byte counts of request and response messages."""
        started = CounterMetricFamily("grpc_server_started_total",
                                      "Total number of RPCs started on the server.", labels=_CALL_LABELS)
        handled = CounterMetricFamily(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=["grpc_code", *_CALL_LABELS])
        calls = sorted(self.calls, key=lambda c: (c.name, c.service))
        received = sent = 0
        for c in calls:
            started.add_metric([c.name, c.service, GRPC_TYPES[c.kind]], c.started)
            received += c.received_bytes
            sent += c.sent_bytes
        for code, code_name in sorted(enumerate(CODE_NAMES), key=lambda e: e[1]):
            for c in calls:
                handled.add_metric([code_name, c.name, c.service, GRPC_TYPES[c.kind]], c.handled[code])
        yield started
        yield handled
        yield CounterMetricFamily("etcd_network_client_grpc_received_bytes_total",
                                  "The total number of bytes received from grpc clients.", value=received)
        yield CounterMetricFamily("etcd_network_client_grpc_sent_bytes_total",
                                  "The total number of bytes sent to grpc clients.", value=sent)

    def _kvstore(self) -> Iterable[Metric]:
        s = self.store
        yield CounterMetricFamily("kvstore_log_appends_total",
                                  "Log appends (one fsync each on a durable log).", value=s.log_appends())
        yield CounterMetricFamily("kvstore_log_entries_total", "Entries appended to the log.",
                                  value=s.log_entries())
        yield _gauge("kvstore_applied_index", "Index of the last applied log entry.", s.applied_index)


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _labelled_one(name: str, help_text: str, label: str, value: str) -> GaugeMetricFamily:
    """etcd's info gauges: 1, with what it says in a label."""
    family = GaugeMetricFamily(name, help_text, labels=[label])
    family.add_metric([value], 1)
    return family


def _histogram(name: str, help_text: str, durations: DurationHistogram | None) -> HistogramMetricFamily:
    """The histogram, or an empty one in etcd's buckets where nothing is timed."""
    buckets, total = (durations or DurationHistogram()).cumulative()
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=total)
