"""The pydantic API: defaults, derived sizes, and the invalid manifests it must reject."""
from __future__ import annotations

import pytest

from sglang_operator.api import InvalidSpec, parse_deployment, parse_spec
from sglang_operator.api.parallelism import ParallelismSpec
from tests.unit.operator.cases import EXAMPLES, INVALID, load_example


def test_defaults_fit_a_single_gpu_replica():
    s = parse_spec({"model": {"path": "/models/m"}})
    assert s.engine == "radix"
    assert (s.parallelism.tp, s.parallelism.pp, s.parallelism.dp) == (1, 1, 1)
    assert s.parallelism.effective_gpus_per_pod == 1 and s.parallelism.group_size == 1
    assert s.autoscaling.enabled is False and s.autoscaling.metric == "sglang:num_requests_waiting"
    assert s.autoscaling.scale_down.stabilization_window_seconds == 300
    assert s.autoscaling.scale_up.stabilization_window_seconds == 0
    assert s.service.port == 30000 and s.service.type == "ClusterIP"
    assert s.rollout.drain_seconds < s.rollout.termination_grace_period_seconds


@pytest.mark.parametrize(
    "given, per_pod, size",
    [
        ({"tp": 8}, 8, 1),
        ({"tp": 16}, 8, 2),  # fills 8-GPU nodes by default
        ({"tp": 16, "gpusPerPod": 4}, 4, 4),
        ({"tp": 8, "pp": 2, "gpusPerPod": 8}, 8, 2),
        ({"tp": 2, "pp": 2}, 4, 1),
    ],
)
def test_group_size_is_gpus_per_group_over_gpus_per_pod(given, per_pod, size):
    p = ParallelismSpec.model_validate(given)
    assert (p.effective_gpus_per_pod, p.group_size) == (per_pod, size)


def test_snake_case_in_python_camel_case_on_the_wire():
    s = parse_spec({"model": {"path": "/m", "servedName": "x"}, "parallelism": {"gpusPerPod": 1}})
    assert s.model.served_name == "x" and s.parallelism.gpus_per_pod == 1
    wire = s.to_api()
    assert wire["model"]["servedName"] == "x" and wire["parallelism"]["gpusPerPod"] == 1
    assert parse_spec(wire) == s  # round trip


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_valid(path):
    d = parse_deployment(load_example(path))
    assert d.metadata.name == load_example(path)["metadata"]["name"]


def test_examples_cover_the_advertised_shapes():
    specs = {p.stem: parse_deployment(load_example(p)).spec for p in EXAMPLES}
    assert any(s.parallelism.tp == 1 for s in specs.values())
    assert any(s.parallelism.tp == 16 and s.parallelism.group_size == 2 for s in specs.values())
    assert any(s.parallelism.pp == 2 for s in specs.values())
    assert any(s.autoscaling.enabled for s in specs.values())
    assert any(s.engine == "sglang" for s in specs.values())
    assert any(s.speculative is not None and s.speculative.draft_model is not None for s in specs.values())


@pytest.mark.parametrize("case_id, manifest, both, per_layer", INVALID, ids=[c[0] for c in INVALID])
def test_pydantic_rejects_invalid_manifest(case_id, manifest, both, per_layer):
    with pytest.raises(InvalidSpec) as err:
        parse_deployment(manifest)
    text = str(err.value)
    for expected in both + per_layer.get("pydantic", []):
        assert expected in text, f"{case_id}: {expected!r} not in {text!r}"


def test_errors_name_every_broken_field():
    with pytest.raises(InvalidSpec) as err:
        parse_spec({"model": {"path": "/m"}, "parallelism": {"tp": 0}, "service": {"port": 70000}})
    assert len(err.value.problems) == 2
    assert any(p.startswith("spec.parallelism.tp:") for p in err.value.problems)
    assert any(p.startswith("spec.service.port:") for p in err.value.problems)


def test_accepts_model_paths_with_spaces_quotes_and_dollars():
    path = """/models/my "best" model $(HOME) 'v2'"""
    assert parse_spec({"model": {"path": path}}).model.path == path
