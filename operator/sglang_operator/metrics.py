"""Prometheus metrics of the operator itself (served by `sglang-operator run --metrics-port`).

`kind` is the kind of object whose event started a reconcile (SGLangDeployment, LeaderWorkerSet, Pod,
Service, PodDisruptionBudget, CustomResourceDefinition) or `Resync` for the periodic timer: it tells
drift repair and status tracking apart from spec changes.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("sglang_operator_reconciles", "Reconcile passes by triggering kind and result",
                     ["kind", "result"])
ERRORS = Counter("sglang_operator_reconcile_errors", "Reconcile passes that did not converge, by kind and reason",
                 ["kind", "reason"])
DURATION = Histogram("sglang_operator_reconcile_duration_seconds", "Duration of reconcile passes by triggering kind",
                     ["kind"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WRITES = Counter("sglang_operator_api_writes", "Writes to the Kubernetes API by kind of object and action",
                 ["kind", "action"])
REQUESTS = Counter("sglang_operator_api_requests", "Requests of the reconciler and the autoscaler to the Kubernetes "
                   "API by HTTP method (kopf's own watches and diff-base patches are not counted)", ["method"])
EVENTS_SKIPPED = Counter("sglang_operator_watch_events_skipped",
                         "Watch events that changed nothing a reconcile pass reads (no pass run): status writes "
                         "of SGLangDeployments, child and pod churn, the operator's own applies", ["kind"])
LEADER = Gauge("sglang_operator_leader", "1 while this replica holds the leader Lease (or runs without election)")

# The autoscaler's, per SGLangDeployment.
QUEUE = Gauge("sglang_operator_autoscaler_queue_depth",
              "Metric (waiting requests) summed over ready leaders at the last scrape", ["namespace", "deployment"])
DESIRED = Gauge("sglang_operator_autoscaler_desired_replicas", "Groups the autoscaler wants",
                ["namespace", "deployment"])
LEADERS = Gauge("sglang_operator_autoscaler_leaders_reporting", "Ready leaders that answered the last scrape",
                ["namespace", "deployment"])
SCALES = Counter("sglang_operator_autoscaler_scales", "LeaderWorkerSet replica changes made by the autoscaler",
                 ["namespace", "deployment", "direction"])
SCRAPE_FAILURES = Counter("sglang_operator_autoscaler_scrape_failures",
                          "Leader scrapes that failed or lacked the metric", ["namespace", "deployment"])


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Start the /metrics endpoint in a daemon thread."""
    start_http_server(port, addr=addr)
