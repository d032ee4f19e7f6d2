"""GitOps: the Argo CD health check (charts/sglang-operator/argocd/health.lua) in a real Lua 5.1
(lupa; Argo CD runs gopher-lua, a Lua 5.1) against statuses made by the operator's own status code
(reconcile/status.py compute_status); docs/gitops.md shows that very file, and its manifests parse
(the SGLangDeployment as the operator reads it, the chart values against values.schema.json)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import lupa.lua51 as lua51
import pytest
import yaml

from sglang_operator.api import InvalidSpec, parse_deployment, parse_spec
from sglang_operator.reconcile.reconciler import LWS_MISSING, invalid_spec
from sglang_operator.reconcile.status import Observed, Problem, RouterObserved, compute_status

from .lws_pods import ready_pods

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "charts" / "sglang-operator" / "argocd" / "health.lua"
SCHEMA = json.loads((REPO / "charts" / "sglang-operator" / "values.schema.json").read_text())
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def lws(want: int, have: int, updated: int | None = None) -> dict[str, Any]:
    return {"spec": {"replicas": want}, "status": {"replicas": have, "readyReplicas": have,
                                                    "updatedReplicas": have if updated is None else updated}}


def sgld(lws_obj=None, ready: int = 0, problem: Problem | None = None, generation: int = 3,
         observed: int | None = None, router: RouterObserved | None = None) -> dict[str, Any]:
    """An SGLangDeployment whose status the operator computed from what it observed."""
    want = (lws_obj or {}).get("spec", {}).get("replicas")
    o = Observed("llama", "serving", generation, want, "http://llama-api.serving.svc:30000", lws_obj, problem,
                 ready_pods(ready), router)
    status = compute_status(o, None, T0)
    if observed is not None:
        status["observedGeneration"] = observed
    obj = {"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment",
           "metadata": {"name": "llama", "namespace": "serving", "generation": generation},
           "spec": {"model": {"path": "/m"}}, "status": status}
    return json.loads(json.dumps(obj))  # what the API server returns: JSON, no Python objects


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the script as Argo CD does: `obj` is a global, the chunk returns {status, message}."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return dict(result.items())


def rejected() -> Problem:
    """What the reconciler reports for a spec it cannot render (as parse_spec words it)."""
    try:
        parse_spec({"model": {"path": "/m"}, "parallelism": {"tp": 0}})
    except InvalidSpec as e:
        return invalid_spec(e)
    raise AssertionError("tp: 0 was accepted")


def router(workers: int, ready: int) -> RouterObserved:
    return RouterObserved({"spec": {"replicas": 1}, "status": {"readyReplicas": ready}}, workers,
                          "http://llama-router.serving.svc:30000")


@pytest.mark.parametrize("obj,status,needle", [
    (sgld(lws(2, 2), ready=2), "Healthy", "AllGroupsReady: 2/2 groups ready"),
    (sgld(lws(2, 2), ready=1), "Progressing", "GroupsNotReady: 1/2 groups ready"),
    (sgld(None), "Progressing", "Creating"),
    (sgld(lws(3, 2), ready=2), "Progressing", "GroupsNotReady"),
    (sgld(lws(2, 2, updated=1), ready=2), "Progressing", "RollingUpdate"),
    (sgld(lws(1, 2), ready=2), "Progressing", "ScalingDown"),
    (sgld(lws(0, 0)), "Suspended", "ScaledToZero"),
    (sgld(None, problem=LWS_MISSING), "Degraded", "LeaderWorkerSetMissing: "),
    (sgld(lws(2, 2), ready=2, problem=rejected()), "Degraded",
     "InvalidSpec: The spec cannot be rendered"),
    (sgld(lws(2, 2), ready=2, problem=Problem("ApplyFailed", "forbidden; retrying")), "Degraded", "ApplyFailed"),
    (sgld(lws(2, 2), ready=2, generation=4, observed=3), "Progressing", "observe generation 4"),
    (sgld(lws(2, 2), ready=2, router=router(workers=2, ready=1)), "Healthy", "AllGroupsReady"),
    (sgld(lws(2, 2), ready=2, router=router(workers=2, ready=0)), "Progressing", "Router: RouterPodsNotReady"),
])
def test_health_from_the_operators_status(obj, status, needle):
    got = health(obj)
    assert got["status"] == status and needle in got["message"], got


def test_an_object_without_status_is_progressing():
    obj = {"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment",
           "metadata": {"name": "llama", "generation": 1}, "spec": {"model": {"path": "/m"}}}
    assert health(obj)["status"] == "Progressing"
    assert health({**obj, "status": {}})["status"] == "Progressing"


def test_docs_show_the_shipped_script():
    doc = (REPO / "docs" / "gitops.md").read_text()
    block = re.search(r"resource\.customizations\.health\.sglangfleet\.dev_SGLangDeployment: \|\n(.*?)\n```",
                      doc, re.S)
    assert block, "docs/gitops.md has no argocd-cm health customization"
    shown = "\n".join(line[4:] for line in block.group(1).splitlines())
    assert shown.strip() == SCRIPT.read_text().strip()


def test_the_manifests_in_the_doc_parse_and_its_fleet_is_a_valid_sgld():
    doc = (REPO / "docs" / "gitops.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    objs = [d for b in blocks for d in yaml.safe_load_all(b) if d]
    kinds = {d["kind"] for d in objs}
    assert {"Application", "ConfigMap", "GitRepository", "HelmRelease", "Kustomization", "SGLangDeployment"} <= kinds
    for d in objs:
        if d["kind"] == "SGLangDeployment":
            parse_deployment(d)
        if d["kind"] in ("Application", "HelmRelease"):  # chart values as the schema allows them
            values = d["spec"].get("source", {}).get("helm", {}).get("valuesObject") or d["spec"].get("values")
            if values is not None:
                jsonschema.validate(values, SCHEMA)
