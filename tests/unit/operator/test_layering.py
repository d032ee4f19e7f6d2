"""The operator's imports point down its layers only, and no modules or subpackages form a cycle.

Layers, lowest first (a module may import its own layer and those below):
0. api: the SGLangDeployment API (pydantic models, CRD generation) and the LWS API's names
1. render: spec -> child objects (pure)
2. kube: the Kubernetes client, conditions and timestamps, Events; settings; metrics
3. decisions (pure): what to apply, status, events, how many groups, the autoscaler's memory
4. reconcile, autoscale, leader election: passes that read and write through kube
5. handlers: the kopf wiring (injects the autoscaler's hand-off into the reconciler)
6. cli: flags -> Settings -> kopf
"""
from __future__ import annotations

from pathlib import Path

from tests.support.layering import cycles, module_imports, package_graph, upward_imports

PACKAGE = "sglang_operator"
ROOT = Path(__file__).resolve().parents[3] / "operator" / PACKAGE

LAYERS = [
    ["api"],
    ["render"],
    ["kube", "settings", "metrics"],
    ["reconcile.diff", "reconcile.plan", "reconcile.readiness", "reconcile.status", "reconcile.model_download", "reconcile.change_events", "reconcile.handoff",
     "autoscale.decide", "autoscale.state", "autoscale.report"],
    ["reconcile", "autoscale", "leader"],
    ["handlers"],
    ["cli"],
]


def test_no_module_imports_a_higher_layer():
    graph = module_imports(ROOT, PACKAGE)
    assert upward_imports(graph, LAYERS, PACKAGE) == []


def test_no_import_cycles_between_modules_or_subpackages():
    graph = module_imports(ROOT, PACKAGE)
    assert cycles(graph) == []
    assert cycles(package_graph(graph, PACKAGE)) == []


def test_reconcile_does_not_know_the_autoscaler():
    graph = module_imports(ROOT, PACKAGE)
    assert not [(m, d) for m, deps in graph.items() if m.startswith(f"{PACKAGE}.reconcile")
                for d in deps if d.startswith(f"{PACKAGE}.autoscale")]
