"""The operator's /metrics with values from its own code, for the monitoring test (no control plane).

`python -m tests.monitoring.operator_metrics --port P --runtime-port R --dead-port D` serves the
operator's registry (sglang_operator.metrics) on 127.0.0.1:P and, once a second, runs what fills it
against an in-memory API (tests/unit/operator/fake_kube.py):
- a reconcile pass of an SGLangDeployment without autoscaling (reconciles, durations, API writes);
- a reconcile pass where the LeaderWorkerSet kind is missing (reconcile errors, LeaderWorkerSetMissing);
- an autoscaler tick whose two leader pods are the real runtime server on 127.0.0.1:R and a dead port
  D (queue depth scraped from the runtime, desired groups, leaders reporting, scrape failures). The
  set starts at 3 groups with no waiting requests, so the first tick scales it down.
"""
from __future__ import annotations

import argparse
import asyncio
import time

from sglang_operator import metrics
from sglang_operator.autoscale.scrape import leader_pod_selector
from sglang_operator.autoscale.tick import Autoscaler
from sglang_operator.reconcile.reconciler import Reconciler

from tests.unit.operator.fake_kube import FakeKube

NAMESPACE, NAME, STEADY, BROKEN = "serving", "tiny", "steady", "no-lws"


def _leader(group: int, port: int) -> dict:
    return {"metadata": {"name": f"{NAME}-{group}", "namespace": NAMESPACE, "labels": leader_pod_selector(NAME)},
            "spec": {"containers": [{"name": "runtime", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": "127.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _sgld(name: str, autoscaling: bool = True) -> dict:
    return {"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
            "spec": {"model": {"path": "/models/tiny"}, "parallelism": {"dp": 3}, "autoscaling": {
                "enabled": autoscaling, "minReplicas": 1, "maxReplicas": 4, "metric": "sglang:num_queue_reqs",
                "targetPerReplica": 1, "pollIntervalSeconds": 1,
                "scaleDown": {"stabilizationWindowSeconds": 0,
                              "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}]}}}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--runtime-port", type=int, required=True)
    p.add_argument("--dead-port", type=int, required=True)
    a = p.parse_args()
    kube = FakeKube("sglang-operator", pods=[_leader(0, a.runtime_port), _leader(1, a.dead_port)])
    kube.put(_sgld(NAME))
    kube.put(_sgld(STEADY, autoscaling=False))
    broken = FakeKube("sglang-operator", missing_kinds=("LeaderWorkerSet",))
    broken.put(_sgld(BROKEN))
    good, bad = Reconciler(kube, post=lambda *_: None), Reconciler(broken, post=lambda *_: None)
    scaler = Autoscaler(kube, post=lambda *_: None)
    good.reconcile(NAMESPACE, NAME, trigger="SGLangDeployment")  # creates the set (3 groups); the
    # autoscaler owns its replicas from here on (the operator hands them over through managed fields)
    metrics.LEADER.set(1)
    metrics.serve(a.port, "127.0.0.1")
    while True:
        good.reconcile(NAMESPACE, STEADY, trigger="Resync")
        bad.reconcile(NAMESPACE, BROKEN, trigger="SGLangDeployment")
        asyncio.run(scaler.tick(NAMESPACE, NAME))
        time.sleep(1)


if __name__ == "__main__":
    main()
