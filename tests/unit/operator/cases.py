"""Shared test data for the API/render tests: a valid base manifest, the examples, and invalid
manifests with what each layer (pydantic, API server) must say about them."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden"

BASE: dict[str, Any] = {
    "apiVersion": "sglangfleet.dev/v1alpha1",
    "kind": "SGLangDeployment",
    "metadata": {"name": "base"},
    "spec": {"model": {"path": "/models/m"}},
}


def load_example(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep merge; a None value deletes the key."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def drop_empty_lists(d: Any) -> Any:
    """Pydantic dumps absent lists as []; the API server leaves them out."""
    if isinstance(d, dict):
        return {k: drop_empty_lists(v) for k, v in d.items() if v != []}
    return d


def spec(**patch: Any) -> dict[str, Any]:
    return merged(BASE, {"spec": patch})


# (id, manifest, substrings both layers' errors contain, extra substrings per layer)
INVALID: list[tuple[str, dict[str, Any], list[str], dict[str, list[str]]]] = [
    ("negative-tp", spec(parallelism={"tp": -1}), ["spec.parallelism.tp", "greater than or equal to 1"], {}),
    ("zero-pp", spec(parallelism={"pp": 0}), ["spec.parallelism.pp", "greater than or equal to 1"], {}),
    (
        "min-above-max",
        spec(autoscaling={"enabled": True, "minReplicas": 5, "maxReplicas": 2}),
        ["spec.autoscaling.minReplicas", "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"],
        {},
    ),
    (
        "max-missing-when-enabled",
        spec(autoscaling={"enabled": True}),
        ["autoscaling.maxReplicas is required when autoscaling.enabled is true"],
        {},
    ),
    (
        "tp-pp-not-divisible",
        spec(parallelism={"tp": 4, "pp": 3, "gpusPerPod": 8}),
        ["spec.parallelism.gpusPerPod", "parallelism.gpusPerPod must divide tp*pp"],
        {},
    ),
    (
        "tp-not-divisible-by-default-gpus-per-pod",
        spec(parallelism={"tp": 12}),
        ["parallelism.gpusPerPod must divide tp*pp", "defaults to min(tp*pp, 8)"],
        {},
    ),
    (
        "unknown-engine",
        spec(engine="vllm"),
        ["spec.engine", "radix", "sglang"],
        {"api": ["Unsupported value"]},
    ),
    (
        "bad-metric",
        spec(autoscaling={"metric": "queue depth"}),
        ["autoscaling.metric must be a Prometheus metric name"],
        {"api": ["spec.autoscaling.metric"], "pydantic": ["spec.autoscaling.metric"]},
    ),
    (
        "bad-quantity",
        spec(resources={"requests": {"memory": "lots"}}),
        ["spec.resources.requests.memory"],
        {"api": ["should match"], "pydantic": ["must be a non-negative Kubernetes quantity"]},
    ),
    (
        "negative-quantity",
        spec(resources={"limits": {"cpu": -1}}),
        ["spec.resources.limits.cpu"],
        {"api": ["greater than or equal to 0"], "pydantic": ["must be a non-negative Kubernetes quantity"]},
    ),
    (
        "gpu-requests-differ-from-limits",
        spec(resources={"requests": {"nvidia.com/gpu": 4}, "limits": {"nvidia.com/gpu": 8}}),
        ["must give the same amount of an extended resource"],
        {},
    ),
    (
        "requests-above-limits",
        spec(resources={"requests": {"memory": "2Gi", "cpu": 1}, "limits": {"memory": "1Gi"}}),
        ["spec.resources.requests", "resources.requests must not exceed resources.limits for the same resource"],
        {},
    ),
    ("fractional-gpu", spec(resources={"limits": {"nvidia.com/gpu": "500m"}}), ["must be whole numbers"], {}),
    ("bad-resource-name", spec(resources={"limits": {"gpu": 1}}), ["resources keys must be cpu, memory"], {}),
    (
        "rollout-both-zero",
        spec(rollout={"maxSurge": 0, "maxUnavailable": "0%"}),
        ["rollout.maxSurge and rollout.maxUnavailable must not both be 0"],
        {},
    ),
    (
        "bad-percent",
        spec(rollout={"maxSurge": "150%"}),
        ["spec.rollout.maxSurge"],
        {"api": ["should match"], "pydantic": ["must be a non-negative integer or a percentage"]},
    ),
    (
        "two-volume-sources",
        spec(model={"path": "/m", "volume": {"hostPath": {"path": "/a"}, "nfs": {"server": "s", "path": "/b"}}}),
        ["model.volume must set exactly one of persistentVolumeClaim, hostPath, nfs, image"],
        {},
    ),
    (
        "api-key-with-upstream-sglang",
        spec(engine="sglang", apiKeySecret={"name": "k", "key": "api-key"}),
        ["spec.apiKeySecret", "apiKeySecret needs engine: radix"],
        {},
    ),
    (
        "api-key-with-router",
        spec(apiKeySecret={"name": "k", "key": "api-key"}, router={"enabled": True}),
        ["spec.apiKeySecret", "apiKeySecret cannot be combined with spec.router"],
        {},
    ),
    (
        "api-key-env-twice",
        spec(apiKeySecret={"name": "k", "key": "api-key"}, env=[{"name": "SGLANG_API_KEY", "value": "x"}]),
        ["spec.env", "env must not set SGLANG_API_KEY when apiKeySecret is set"],
        {},
    ),
    (
        "speculative-eagle-on-radix",
        spec(speculative={"algorithm": "EAGLE", "draftModel": {"path": "/d"}}),
        ["spec.speculative.algorithm", "speculative.algorithm EAGLE, EAGLE3 and NEXTN need engine: sglang"],
        {},
    ),
    (
        "speculative-standalone-without-draft",
        spec(speculative={"algorithm": "STANDALONE"}),
        ["spec.speculative", "speculative.draftModel is required by STANDALONE"],
        {},
    ),
    (
        "speculative-draft-volume-on-the-models-mount",
        spec(model={"path": "/models/m", "volume": {"hostPath": {"path": "/a"}}},
             speculative={"algorithm": "STANDALONE", "draftModel": {
                 "path": "/models/d", "volume": {"hostPath": {"path": "/b"}, "mountPath": "/models"}}}),
        ["spec.speculative.draftModel.volume.mountPath", "must differ from model.volume.mountPath"],
        {},
    ),
    (
        "duplicate-env",
        spec(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        ["spec.env", "Duplicate value"],
        {},
    ),
    (
        "env-value-and-valuefrom",
        spec(env=[{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
        ["env[].value and env[].valueFrom are mutually exclusive"],
        {},
    ),
    (
        "toleration-exists-with-value",
        spec(scheduling={"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}),
        ["tolerations[].value must be empty when operator is Exists"],
        {},
    ),
    (
        "bad-node-selector-key",
        spec(scheduling={"nodeSelector": {"bad key!": "x"}}),
        ["scheduling.nodeSelector keys must be qualified names"],
        {},
    ),
    (
        "name-with-dot",
        merged(BASE, {"metadata": {"name": "llama.v3"}}),
        ["metadata.name must be at most 40 characters"],
        {},
    ),
    ("missing-model", merged(BASE, {"spec": {"model": None, "engine": "radix"}}), ["spec.model", "equired"], {}),
    ("unknown-field", spec(replicas=3), ["spec.replicas"], {"api": ["unknown field"], "pydantic": ["Extra inputs"]}),
]
