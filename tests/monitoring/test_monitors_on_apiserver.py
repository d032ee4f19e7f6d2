"""The chart's monitoring objects on a real API server with the Prometheus Operator's CRDs (pinned,
from its Go module): helm renders them only once the API server serves monitoring.coreos.com/v1,
and the server accepts them under strict field validation (an unknown or misspelt field fails)."""
from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from .chart import CHART, prometheus_operator_crds

pytestmark = pytest.mark.cluster

MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def helm_template(cluster, namespace: str, tmp_path) -> list[dict]:
    """`helm template --validate`: the capabilities come from the API server's discovery (a fresh
    discovery cache each time, so a newly installed API shows)."""
    cache = tmp_path / f"cache-{len(list(tmp_path.glob('cache-*')))}"
    env = {**os.environ, "KUBECACHEDIR": str(cache), "HELM_CACHE_HOME": str(cache)}
    out = subprocess.run([str(cluster.bins.helm), "template", "fleet", str(CHART), "--namespace", namespace,
                          f"--kubeconfig={cluster.kubeconfig}", "--validate"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_monitors_appear_with_the_api_and_pass_strict_server_validation(cluster, namespace, tmp_path):
    crds = prometheus_operator_crds()
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in crds]
    already = cluster.kubectl("get", "crd", *names, check=False).returncode == 0
    if not already:
        assert not {d["kind"] for d in helm_template(cluster, namespace, tmp_path)} & MONITORING_KINDS
    try:
        for path in crds:  # server-side: these CRDs exceed client-side apply's annotation limit
            cluster.kubectl("apply", "--server-side", "--field-manager=sglang-fleet-tests", "-f", str(path))
        cluster.wait_crds_established(names)
        docs = [d for d in helm_template(cluster, namespace, tmp_path) if d["kind"] in MONITORING_KINDS]
        assert {d["kind"] for d in docs} == MONITORING_KINDS
        out = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
                              input=yaml.safe_dump_all(docs), check=False)
        assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr
        assert sorted(out.stdout.split("\n")[:-1]) == sorted(
            f"{d['kind'].lower()}.monitoring.coreos.com/{d['metadata']['name']} created (server dry run)"
            for d in docs), out.stdout
    finally:
        if not already:
            cluster.kubectl("delete", "crd", *names, "--wait=false", check=False)
