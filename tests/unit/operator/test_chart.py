"""The Helm chart ships the same CRD as crds/ (helm installs charts/*/crds/ before the templates)."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "sglang-operator"


def test_chart_crds_are_identical_to_the_generated_ones():
    top = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top, "crds/ is empty"
    assert chart.keys() == top.keys(), "run `make crds` (it writes both crds/ and charts/sglang-operator/crds/)"
    for name in top:
        assert chart[name] == top[name], f"charts/sglang-operator/crds/{name} differs from crds/{name}: run `make crds`"


def test_values_default_to_ha_and_hardened_pods():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["replicas"] >= 2 and values["leaderElection"]["enabled"]
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    for must in ("runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false",
                 "capabilities: {drop: [ALL]}"):
        assert must in deployment
