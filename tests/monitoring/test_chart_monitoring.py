"""The chart's monitoring objects as `helm template` renders them: the Prometheus Operator objects
only where its API exists, and monitors that select what the operator really renders (labels of
leader pods, their metrics port, the operator's metrics Service)."""
from __future__ import annotations

import json
import re

import pytest

from sglang_operator.api.lws import LWS_GROUP_INDEX_LABEL
from sglang_operator.render import render_all

from .chart import DASHBOARD, helm as helm_binary, one, render

MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def helm():
    return helm_binary()


def kinds(docs):
    return {d["kind"] for d in docs}


def meta_label(key: str) -> str:
    """The service-discovery label Prometheus makes of a pod label."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def test_prometheus_operator_objects_only_where_its_api_exists(helm):
    assert not kinds(render(helm, api=False)) & MONITORING_KINDS
    assert MONITORING_KINDS <= kinds(render(helm))
    assert not kinds(render(helm, "--set", "monitoring.enabled=false")) & MONITORING_KINDS
    off = render(helm, "--set", "monitoring.podMonitor.enabled=false", "--set", "monitoring.rules.enabled=false")
    assert kinds(off) & MONITORING_KINDS == {"ServiceMonitor"}


def test_the_pod_monitor_scrapes_leaders_on_their_metrics_port(helm):
    pm = one(render(helm), "PodMonitor")["spec"]
    # a two-pod group: the leader and a worker, as the operator renders them
    lws = next(o for o in render_all("llama", "serving", {"model": {"path": "/m"},
                                                          "parallelism": {"tp": 2, "gpusPerPod": 1}})
               if o["kind"] == "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    leader, worker = lws["leaderTemplate"], lws["workerTemplate"]
    want = pm["selector"]["matchLabels"]
    assert want.items() <= leader["metadata"]["labels"].items()
    assert not want.items() <= worker["metadata"]["labels"].items()
    (endpoint,) = pm["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in leader["spec"]["containers"][0]["ports"]}
    assert endpoint["port"] in ports and endpoint["path"] == leader["metadata"]["annotations"]["prometheus.io/path"]
    assert str(ports[endpoint["port"]]) == leader["metadata"]["annotations"]["prometheus.io/port"]
    # the labels the dashboard and the alerts group by come from labels the pods carry
    pod_labels = {meta_label(k) for k in [*leader["metadata"]["labels"], LWS_GROUP_INDEX_LABEL]}
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert set(targets) >= {"deployment", "group", "instance"}
    for target, sources in targets.items():
        assert all(s in pod_labels or s == "__meta_kubernetes_pod_name" for s in sources), target
    assert pm["namespaceSelector"] == {"any": True}
    scoped = one(render(helm, "--set", "watchNamespaces={serving,staging}"), "PodMonitor")["spec"]
    assert scoped["namespaceSelector"] == {"matchNames": ["serving", "staging"]}


def test_the_service_monitor_selects_the_operators_metrics_service_only(helm):
    docs = render(helm)
    sm = one(docs, "ServiceMonitor")["spec"]
    services = [d for d in docs if d["kind"] == "Service"]
    selected = [s for s in services if sm["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["fleet-sglang-operator-metrics"]
    (endpoint,) = sm["endpoints"]
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    # the autoscaler's series carry their SGLangDeployment's namespace label: it must survive
    assert endpoint["honorLabels"] is True
    assert sm["namespaceSelector"] == {"matchNames": ["sglang-system"]}
    deployment = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert selected[0]["spec"]["ports"][0]["targetPort"] in {p["name"] for p in deployment["ports"]}


def test_extra_labels_reach_every_monitoring_object(helm):
    docs = render(helm, "--set", "monitoring.labels.release=kube-prometheus-stack")
    for d in docs:
        if d["kind"] in MONITORING_KINDS or d["metadata"]["name"].endswith("-dashboard"):
            assert d["metadata"]["labels"]["release"] == "kube-prometheus-stack", d["kind"]


def test_the_dashboard_configmap_carries_the_chart_file_for_grafanas_sidecar(helm):
    cm = next(d for d in render(helm, api=False) if d["kind"] == "ConfigMap"
              and d["metadata"]["name"] == "fleet-sglang-operator-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["sglang-fleet.json"]) == json.loads(DASHBOARD.read_text())
    off = render(helm, "--set", "monitoring.dashboard.enabled=false")
    assert not [d for d in off if d["metadata"]["name"].endswith("-dashboard")]
