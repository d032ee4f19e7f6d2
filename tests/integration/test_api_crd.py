"""The generated CRD on a real kube-apiserver: examples accepted, invalid manifests rejected with
the expected field and rule, defaults and the scale subresource as designed, and pydantic agreeing
with the API server on what is valid."""
from __future__ import annotations

import json
import time

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import dynamic
from kubernetes.client.rest import ApiException

from sglang_operator.api import API_VERSION, KIND, InvalidSpec, parse_deployment, parse_spec
from tests.unit.operator.cases import BASE, EXAMPLES, INVALID, drop_empty_lists, merged

pytestmark = pytest.mark.cluster


def sgld(api_client):
    return dynamic.DynamicClient(api_client).resources.get(api_version=API_VERSION, kind=KIND)


def apply_dry_run(cluster, namespace: str, manifest: dict):
    return cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_apply_cleanly(cluster, namespace, path):
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "created (server dry run)" in proc.stdout


@pytest.mark.parametrize("case_id, manifest, both, per_layer", INVALID, ids=[c[0] for c in INVALID])
def test_api_server_rejects_invalid_manifest(cluster, namespace, case_id, manifest, both, per_layer):
    proc = apply_dry_run(cluster, namespace, manifest)
    assert proc.returncode != 0, f"{case_id} was accepted"
    for expected in both + per_layer.get("api", []):
        assert expected in proc.stderr, f"{case_id}: {expected!r} not in {proc.stderr!r}"


def test_server_defaults_equal_pydantic_defaults(api_client, namespace):
    body = merged(BASE, {"metadata": {"name": "defaults"}})
    created = sgld(api_client).create(body=body, namespace=namespace).to_dict()
    assert created["spec"] == drop_empty_lists(parse_spec(body["spec"]).to_api())
    # and the operator reads back exactly what it would have assumed
    assert parse_deployment(created).spec == parse_spec(body["spec"])


def test_scale_subresource_drives_dp_and_printer_columns(cluster, api_client, namespace):
    res = sgld(api_client)
    res.create(body=merged(BASE, {"metadata": {"name": "scaled"}}), namespace=namespace)
    status = {"replicas": 1, "readyReplicas": 1, "desiredReplicas": 3, "queueDepth": 7,
              "selector": "leaderworkerset.sigs.k8s.io/worker-index=0,sglangfleet.dev/deployment=scaled"}
    res.status.patch(name="scaled", namespace=namespace, body={"status": status}, content_type="application/merge-patch+json")
    kubectl_eventually(cluster, "scale", "-n", namespace, "sgld/scaled", "--replicas=3")
    assert res.get(name="scaled", namespace=namespace).spec.parallelism.dp == 3
    scale = json.loads(cluster.kubectl("get", "--raw", f"/apis/{API_VERSION}/namespaces/{namespace}/sglangdeployments/scaled/scale").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["selector"] == status["selector"]
    table = kubectl_eventually(cluster, "get", "sgld", "-n", namespace).splitlines()
    assert table[0].split() == ["NAME", "READY", "REPLICAS", "DESIRED", "QUEUE", "ENGINE", "STATUS", "ROUTER", "AGE"]
    assert table[1].split()[:6] == ["scaled", "1", "1", "3", "7", "radix"]


def test_status_accepts_what_the_operator_writes(api_client, namespace):
    res = sgld(api_client)
    res.create(body=merged(BASE, {"metadata": {"name": "st"}}), namespace=namespace)
    status = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "Progressing", "message": "0/1 groups ready",
                        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}],
        "endpoint": f"http://st-api.{namespace}.svc:30000",
        "lastScaleTime": "2026-01-01T00:00:00Z",
        "kopf": {"progress": {"h": {"retries": 1}}},
    }
    res.status.patch(name="st", namespace=namespace, body={"status": status}, content_type="application/merge-patch+json")
    stored = res.get(name="st", namespace=namespace).to_dict()
    assert stored["status"]["kopf"] == status["kopf"]  # not pruned
    assert parse_deployment(stored).status.conditions[0].type == "Ready"


# Cross-field rules exist twice (CEL and Python): random near-boundary inputs must get the same verdict.
near_boundary = st.fixed_dictionaries(
    {
        "parallelism": st.fixed_dictionaries(
            {"tp": st.integers(-1, 24), "pp": st.integers(0, 4)},
            optional={"gpusPerPod": st.integers(0, 16), "dp": st.integers(-1, 3)},
        ),
        "autoscaling": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "minReplicas": st.integers(0, 4),
                "maxReplicas": st.integers(0, 4),
                "metric": st.sampled_from(["sglang:num_requests_waiting", "a b", "9lives", "x_y:z", ""]),
            },
        ),
        "rollout": st.fixed_dictionaries(
            {},
            optional={
                "maxSurge": st.sampled_from([0, 1, "0%", "50%", "101%", -1]),
                "maxUnavailable": st.sampled_from([0, 2, "0%", "100%", "x"]),
                "drainSeconds": st.integers(0, 30),
                "terminationGracePeriodSeconds": st.integers(1, 30),
            },
        ),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "requests": st.dictionaries(st.sampled_from(["cpu", "nvidia.com/gpu", "gpu"]), st.sampled_from([1, 2, "1", "1.5", "2Gi", "x"]), max_size=2),
                "limits": st.dictionaries(st.sampled_from(["cpu", "nvidia.com/gpu"]), st.sampled_from([1, 2, "1", "500m"]), max_size=2),
            },
        ),
    }
)


def test_pydantic_and_api_server_agree(api_client, namespace):
    res, verdicts = sgld(api_client), []

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(patch=near_boundary)
    # Most random draws break some rule; pin one valid and one subtly invalid case so both verdicts occur.
    @example(patch={"parallelism": {"tp": 16, "pp": 1}, "autoscaling": {"enabled": True, "maxReplicas": 2}})
    @example(patch={"parallelism": {"tp": 12, "pp": 1}, "autoscaling": {}})
    def agree(patch):
        body = merged(BASE, {"metadata": {"name": "agree"}, "spec": patch})
        try:
            parse_deployment(body)
            pydantic_ok, why = True, ""
        except InvalidSpec as err:
            pydantic_ok, why = False, str(err)
        try:
            res.create(body=body, namespace=namespace, dry_run="All")
            server_ok, server_why = True, ""
        except ApiException as err:
            assert err.status == 422, err.body
            server_ok, server_why = False, json.loads(err.body)["message"]
        assert pydantic_ok == server_ok, f"pydantic: {why or 'ok'} / server: {server_why or 'ok'} for {patch}"
        verdicts.append(server_ok)

    agree()
    assert True in verdicts and False in verdicts  # the inputs really straddle the rules


def kubectl_eventually(cluster, *args: str) -> str:
    """kubectl's discovery and OpenAPI views trail a CRD's Established condition by a moment."""
    deadline = time.monotonic() + 30
    while True:
        proc = cluster.kubectl(*args, check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            assert proc.returncode == 0, proc.stderr
            return proc.stdout
        time.sleep(1)


def test_kubectl_explain_shows_the_pydantic_docstrings(cluster):
    assert "GPUs per pod; default min(tp*pp, 8)" in kubectl_eventually(cluster, "explain", "sgld.spec.parallelism.gpusPerPod")
    out = kubectl_eventually(cluster, "explain", "sglangdeployments.spec.autoscaling")
    assert "targetPerReplica" in out and "scaleDown" in out
