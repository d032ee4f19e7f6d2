"""spec.router rendering (pure): the SMG Deployment/Service, and the worker manifest SMG's file
discovery reads (Ready leaders only, keyed by pod uid, so a restarted group is a new worker)."""
import json

from sglang_operator.api.validate import parse_spec
from sglang_operator.render import render_all, render_router_workers
from sglang_operator.reconcile.status import RouterObserved, router_condition

SPEC = {"model": {"path": "/models/m"}, "parallelism": {"dp": 2},
        "router": {"enabled": True, "extraArgs": ["--retry-max-retries", "3"]}}


def pod(group, worker, uid, ip, ready=True, deleting=False):
    meta = {"name": f"f-{group}" + (f"-{worker}" if worker else ""), "uid": uid,
            "labels": {"leaderworkerset.sigs.k8s.io/group-index": str(group),
                       "leaderworkerset.sigs.k8s.io/worker-index": str(worker)}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"podIP": ip, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_router_objects_only_when_enabled():
    kinds = lambda spec: [(o["kind"], o["metadata"]["name"]) for o in render_all("f", "ns", spec)]
    assert ("Deployment", "f-router") not in kinds({**SPEC, "router": {}})
    got = kinds(SPEC)
    assert ("Deployment", "f-router") in got and ("Service", "f-router") in got and ("Service", "f-api") in got


def test_deployment_args_are_argv_and_no_api_access():
    dep = next(o for o in render_all("f", "ns", SPEC) if o["kind"] == "Deployment")
    pod_spec = dep["spec"]["template"]["spec"]
    c = pod_spec["containers"][0]
    assert c["command"] == ["smg"] and c["args"][-2:] == ["--retry-max-retries", "3"]
    assert c["args"][c["args"].index("--policy") + 1] == "cache_aware"
    assert "--discovery-provider" in c["args"] and pod_spec["automountServiceAccountToken"] is False
    assert {p["name"] for p in c["ports"]} == {"http", "metrics"}
    # non-root although the published image sets no user; nothing to escalate to, nothing to write
    assert pod_spec["securityContext"]["runAsNonRoot"] and pod_spec["securityContext"]["runAsUser"] != 0
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True}
    # router pods carry no deployment label, so the -api Service and the PDB never select them
    assert "sglangfleet.dev/deployment" not in dep["spec"]["template"]["metadata"]["labels"]


def test_manifest_lists_ready_leaders_by_uid():
    pods = [pod(1, 0, "u1", "10.0.0.2"), pod(0, 0, "u0", "10.0.0.1"), pod(0, 1, "w", "10.0.0.9"),
            pod(2, 0, "u2", "10.0.0.3", ready=False), pod(3, 0, "u3", "10.0.0.4", deleting=True)]
    cm = render_router_workers("f", "ns", pods)
    assert json.loads(cm["data"]["workers.json"]) == {"version": 1, "workers": [
        {"id": "u0", "url": "http://10.0.0.1:30000"}, {"id": "u1", "url": "http://10.0.0.2:30000"}]}
    # a restarted group's leader is a new pod: a new record, the old one gone
    again = render_router_workers("f", "ns", [pod(0, 0, "u0b", "10.0.0.7"), pod(1, 0, "u1", "10.0.0.2")])
    assert [w["id"] for w in json.loads(again["data"]["workers.json"])["workers"]] == ["u0b", "u1"]


def test_router_ready_condition():
    dep = {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    assert router_condition(RouterObserved(dep, 2, "u"))["status"] == "True"
    assert router_condition(RouterObserved(dep, 0, "u"))["reason"] == "NoWorkers"
    assert router_condition(RouterObserved(None, 2, "u"))["reason"] == "Creating"
    assert parse_spec(SPEC).router.policy == "cache_aware"


def test_the_crd_does_not_default_a_router_into_every_object():
    """A field with a default appears in every stored object the API server returns; an operator
    older than the field rejects such specs (its models forbid extra fields), e.g. between the CRD
    update and the new operator's rollout. So spec.router has no default: unset means no router."""
    from sglang_operator.api.crd import build_crd

    spec_schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "default" not in spec_schema["properties"]["router"]
    plain = {k: v for k, v in SPEC.items() if k != "router"}
    assert parse_spec(plain).router is None
    assert [o["kind"] for o in render_all("f", "ns", plain)] == ["LeaderWorkerSet", "Service", "PodDisruptionBudget"]
