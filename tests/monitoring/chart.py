"""What the monitoring tests check: the chart's monitoring objects as `helm template` renders them,
the PromQL of its alerts and of its Grafana dashboard, and the pinned prometheus and promtool
(tests/cluster/build.sh monitoring builds them from their Go module, cached like the cluster's)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.cluster.controlplane import HERE as CLUSTER, cache_dir, ensure_binaries, read_versions

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sglang-operator"
DASHBOARD = CHART / "dashboards" / "sglang-fleet.json"
MONITORING_API = "monitoring.coreos.com/v1"


@dataclass(frozen=True)
class Prometheus:
    promtool: Path
    prometheus: Path


def helm() -> Path:
    return ensure_binaries().helm


def _build_when(missing: bool) -> None:
    if missing:
        print("monitoring: building prometheus and promtool, copying the Prometheus Operator's CRDs",
              file=sys.stderr, flush=True)
        subprocess.run([str(CLUSTER / "build.sh"), "monitoring"], stdout=subprocess.DEVNULL, check=True)


def prometheus_tools() -> Prometheus:
    """The pinned prometheus and promtool, built first when missing (minutes, once)."""
    d = cache_dir() / "bin" / f"prometheus-{read_versions()['PROMETHEUS_VERSION']}"
    t = Prometheus(d / "promtool", d / "prometheus")
    _build_when(not (os.access(t.promtool, os.X_OK) and os.access(t.prometheus, os.X_OK)))
    return t


def prometheus_operator_crds() -> list[Path]:
    """The pinned Prometheus Operator's PodMonitor, ServiceMonitor and PrometheusRule CRDs."""
    d = cache_dir() / "crds" / f"prometheus-operator-{read_versions()['PROMETHEUS_OPERATOR_VERSION']}"
    _build_when(len(list(d.glob("*.yaml"))) < 3)
    return sorted(d.glob("*.yaml"))


def render(helm: Path, *args: str, api: bool = True) -> list[dict]:
    """`helm template` of the chart (release "fleet", namespace sglang-system) as documents."""
    argv = [str(helm), "template", "fleet", str(CHART), "--namespace", "sglang-system", *args]
    if api:
        argv += ["--api-versions", MONITORING_API]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects rendered"
    return found[0]


def rule_groups(docs: list[dict]) -> list[dict]:
    """The PrometheusRule's groups: a Prometheus rule file's `groups` as they are."""
    return one(docs, "PrometheusRule")["spec"]["groups"]


def alerts(groups: list[dict]) -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}


def dashboard_queries(rate_interval: str) -> list[tuple[str, str]]:
    """(panel title and refId, expr) of every dashboard target, Grafana's variables filled in as
    Grafana would with every value selected ($namespace, $deployment: `.*`)."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", rate_interval)
            expr = re.sub(r"\$(namespace|deployment)\b", ".*", expr)
            assert "$" not in expr, f"unfilled variable in {panel['title']}: {expr}"
            out.append((f"{panel['title']} [{t['refId']}]", expr))
    return out


def dashboard_rule_file(rate_interval: str = "5m") -> dict:
    """Every dashboard query as a recording rule, so that `promtool check rules` parses them."""
    return {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(dashboard_queries(rate_interval))]}]}
