"""The chart's values.schema.json, PodDisruptionBudget and NOTES.txt, through the real `helm`
(tests/cluster builds it): a typo or a wrong type fails `helm template`/`helm install` naming the
field, every key of values.yaml is in the schema, and the notes say what to do next."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import ensure_binaries

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "sglang-operator"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_binaries().helm


def template(helm: Path, *args: str, chart: Path = CHART) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), "template", "fleet", str(chart), "--namespace", "sglang-system", *args],
                          capture_output=True, text=True, timeout=60)


def docs(helm: Path, *args: str) -> list[dict]:
    r = template(helm, *args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def uncovered(values: Any, node: dict[str, Any], path: str) -> list[str]:
    """Paths of values.yaml that the schema does not describe."""
    node = resolve(node)
    if not isinstance(values, dict):
        return []
    out = []
    for key, value in values.items():
        props = node.get("properties", {})
        if key in props:
            out += uncovered(value, props[key], f"{path}.{key}")
        elif isinstance(node.get("additionalProperties"), dict):  # a map: every key has this schema
            out += uncovered(value, node["additionalProperties"], f"{path}.{key}")
        elif node.get("properties") is not None or node.get("additionalProperties") is False:
            out.append(f"{path}.{key}")
    return out


def closed_objects(node: dict[str, Any], path: str = "") -> list[str]:
    """Objects with named properties that would still accept unknown keys (typos)."""
    out = [] if "properties" not in node or node.get("additionalProperties") is False else [path or "."]
    for key, child in node.get("properties", {}).items():
        out += closed_objects(child, f"{path}.{key}")
    return out


def test_every_key_of_values_yaml_is_in_the_schema():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uncovered(values, SCHEMA, "") == []
    assert SCHEMA["additionalProperties"] is False
    assert closed_objects(SCHEMA) == [], "objects with properties should set additionalProperties: false"


def test_the_defaults_render(helm):
    kinds = {d["kind"] for d in docs(helm)}
    assert {"Deployment", "ServiceAccount", "PodDisruptionBudget"} <= kinds


@pytest.mark.parametrize("setting,message", [
    ("replicas=abc", "at '/replicas': got string, want integer"),
    ("replicas=0", "at '/replicas': minimum: got 0, want 1"),
    ("replikas=2", "additional properties 'replikas' not allowed"),
    ("image.tags=1.0", "at '/image': additional properties 'tags' not allowed"),
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ("leaderElection.enabled=maybe", "at '/leaderElection/enabled': got string, want boolean"),
    ("metrics.port=70000", "at '/metrics/port': maximum: got 70,000, want 65,535"),
    ("logFormat=xml", "at '/logFormat': value must be one of 'json', 'full', 'plain'"),
    ("watchNamespaces={Serving}", "at '/watchNamespaces/0': 'Serving' does not match pattern"),
    ("resources.limits.memory=lots", "at '/resources/limits/memory': 'lots' does not match pattern"),
    ("podDisruptionBudget.maxUnavailable=half", "at '/podDisruptionBudget/maxUnavailable'"),
])
def test_a_typo_or_a_wrong_type_fails_naming_the_field(helm, setting, message):
    r = template(helm, "--set", setting)
    assert r.returncode != 0, f"--set {setting} rendered"
    assert "values don't meet the specifications of the schema" in r.stderr and message in r.stderr, r.stderr


def test_the_operator_pdb_only_with_more_than_one_replica(helm):
    pdb = next(d for d in docs(helm, "--set", "replicas=3") if d["kind"] == "PodDisruptionBudget")
    deployment = next(d for d in docs(helm) if d["kind"] == "Deployment")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert "PodDisruptionBudget" not in {d["kind"] for d in docs(helm, "--set", "replicas=1")}
    assert "PodDisruptionBudget" not in {d["kind"] for d in docs(helm, "--set", "podDisruptionBudget.enabled=false")}
    percent = next(d for d in docs(helm, "--set", "podDisruptionBudget.maxUnavailable=50%")
                   if d["kind"] == "PodDisruptionBudget")
    assert percent["spec"]["maxUnavailable"] == "50%"
    # `helm upgrade --reuse-values` from a release without the block: the default still applies
    assert any(d["kind"] == "PodDisruptionBudget" for d in docs(helm, "--set", "podDisruptionBudget=null"))


def notes(helm: Path, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it. `helm template` leaves the notes out and an offline
    install does not exist, so a copy of the chart renders them through `tpl` as a document."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "notes-check.yaml").write_text(
        'kind: Notes\ntext: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')
    r = template(helm, "--show-only", "templates/notes-check.yaml", *args, chart=chart)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)["text"]


def test_the_notes_say_what_to_do_next(helm, tmp_path):
    text = notes(helm, tmp_path, "--set", "watchNamespaces={serving,batch}")
    for line in ("kubectl -n sglang-system rollout status deployment/fleet-sglang-operator",
                 "kubectl get crd leaderworkersets.leaderworkerset.x-k8s.io",
                 "kubectl apply -n serving -f examples/single-gpu.yaml",
                 "kubectl get sgld -n serving",
                 "in serving, batch."):
        assert line in text, text
    assert (REPO / "examples" / "single-gpu.yaml").exists()
    assert "all namespaces" in notes(helm, tmp_path / "all")
