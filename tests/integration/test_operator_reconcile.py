"""The operator against the real control plane: create/update/delete, status (from the LWS and its
pods), events, drift repair.

One operator process (all namespaces) serves this module; each test has its own namespace.
"""
from __future__ import annotations

import time

import pytest

from sglang_operator.reconcile.diff import FINGERPRINT
from sglang_operator.render import render_all

from tests.support.kube import Api, subset, wait_for_api
from tests.support.operator import Operator, example

from .pods import create_group, set_ready

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def operator(cluster, tmp_path_factory):
    op = Operator(cluster.kubeconfig, tmp_path_factory.mktemp("operator-logs"), "--all-namespaces")
    yield op
    assert op.alive(), f"the operator died during the module:\n{op.log_tail()}"
    op.stop()


@pytest.fixture
def api(operator, api):
    """conftest's api, with the module's operator running and this test's deployments deleted after."""
    yield api
    api.delete_all_sglds()


def rendered(api: Api, name: str) -> dict[str, dict]:
    return {o["kind"]: o for o in render_all(name, api.ns, api.sgld(name)["spec"])}


def matches_renderer(api: Api, name: str) -> dict[str, list[str]]:
    want, live = rendered(api, name), api.children(name)
    return {kind: (subset(live[kind], obj) if live[kind] else ["missing"]) for kind, obj in want.items()}


def test_create_update_delete_follow_the_spec(operator, api):
    sgld = api.create(example("tiny"))
    uid = sgld["metadata"]["uid"]

    wait_for_api(lambda: not any(matches_renderer(api, "tiny").values()), timeout=10, what="the rendered children")
    for kind, child in api.children("tiny").items():
        refs = child["metadata"]["ownerReferences"]
        assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in refs] == [
            ("SGLangDeployment", "tiny", uid, True)], kind
        managers = {m["manager"] for m in child["metadata"]["managedFields"] if m["operation"] == "Apply"}
        assert managers == {"sglang-operator"}, kind

    api.patch_sgld("tiny", {"spec": {"parallelism": {"dp": 3}, "service": {"port": 8080}}})
    wait_for_api(lambda: api.lws("tiny")["spec"]["replicas"] == 3 and api.service("tiny-api")["spec"]["ports"][0]["port"] == 8080,
             timeout=10, what="the update")
    assert not any(matches_renderer(api, "tiny").values())
    status = wait_for_api(lambda: (s := api.sgld("tiny").get("status", {})).get("observedGeneration") == 2 and s,
                      what="observedGeneration 2")
    assert status["endpoint"] == f"http://tiny-api.{api.ns}.svc:8080"
    reasons = wait_for_api(lambda: {"Created", "Updated", "Scaled"} <= {e["reason"] for e in api.events("tiny")}
                       and api.events("tiny"), what="events")
    scaled = [e for e in reasons if e["reason"] == "Scaled"]
    assert scaled[0]["message"] == "Scaled LeaderWorkerSet tiny from 1 to 3 groups"

    # kube-controller-manager's garbage collector removes the children. Right after the control plane
    # starts it may not know the CRD yet (it rescans discovery every 30 s), hence the long timeout.
    api.delete_sgld("tiny")
    wait_for_api(lambda: not any(api.children("tiny").values()), timeout=60, interval=0.5, what="garbage collection")


def test_status_and_conditions_follow_the_leaderworkerset(operator, api, cluster):
    api.create(example("st"))
    st = wait_for_api(lambda: api.sgld("st").get("status", {}).get("conditions") and api.sgld("st")["status"],
                  what="a status")
    assert st["observedGeneration"] == 1 and st["desiredReplicas"] == 1
    assert st["selector"] == "leaderworkerset.sigs.k8s.io/worker-index=0,sglangfleet.dev/deployment=st"
    assert st["endpoint"] == f"http://st-api.{api.ns}.svc:30000"
    assert "kopf" not in st or set(st["kopf"]) <= {"progress"}
    cond = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert cond["Ready"] == ("False", "GroupsNotReady") and cond["Degraded"] == ("False", "AsExpected")

    # No LWS controller nor kubelet here: play them, with a Ready pod and the group reported ready.
    create_group(api, "st", 0, ready=True)
    api.patch_lws_status("st", {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1})
    wait_for_api(lambda: (api.condition("st", "Ready") or {}).get("status") == "True", what="Ready=True")
    st = api.sgld("st")["status"]
    assert st["readyReplicas"] == 1 and st["replicas"] == 1
    assert {c["type"]: c["reason"] for c in st["conditions"]} == {
        "Ready": "AllGroupsReady", "Progressing": "Complete", "Degraded": "AsExpected"}
    table = cluster.kubectl("-n", api.ns, "get", "sgld", "st", "--no-headers").stdout.split()
    assert table[:3] == ["st", "1", "1"]  # NAME READY REPLICAS
    header, row = cluster.kubectl("-n", api.ns, "get", "sgld", "st").stdout.splitlines()[:2]
    col = header.index("STATUS")  # empty columns make split() unreliable: cut at the header
    assert row[col:].split()[0] == "AllGroupsReady"  # the Ready condition's reason

    api.patch_sgld("st", {"spec": {"parallelism": {"dp": 2}}})
    wait_for_api(lambda: (api.condition("st", "Progressing") or {}).get("reason") == "ScalingUp", what="ScalingUp")
    api.patch_lws_status("st", {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2})
    ready = wait_for_api(lambda: (c := api.condition("st", "Ready")) and c["status"] == "False" and c, what="Ready=False")
    assert ready["reason"] == "GroupsNotReady" and ready["message"].startswith("1/2 groups ready")
    create_group(api, "st", 1, ready=True)
    api.patch_lws_status("st", {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2})
    wait_for_api(lambda: (api.condition("st", "Ready") or {}).get("status") == "True", what="Ready=True again")
    assert api.sgld("st")["status"]["readyReplicas"] == 2


def test_ready_follows_pod_readiness_not_the_lws_status_alone(operator, api):
    """LWS v0.8.0 reports a group ready once its pods exist; Ready waits for the pods themselves, and
    each flip of a pod's readiness reaches our status through the pod watch (the resync is 300 s)."""
    api.create(example("pods"))
    wait_for_api(lambda: api.condition("pods", "Ready"), what="a status")
    [leader] = create_group(api, "pods", 0, ready=False)
    api.patch_lws_status("pods", {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1})

    def ready_is(want: str, what: str) -> dict:
        return wait_for_api(lambda: (c := api.condition("pods", "Ready")) and c["status"] == want and c,
                            timeout=5, what=what)

    # The LWS event has been handled (replicas=1 lands with it) and still nothing is ready.
    wait_for_api(lambda: api.sgld("pods")["status"].get("replicas") == 1, timeout=5, what="the LWS status")
    time.sleep(1)
    cond = api.condition("pods", "Ready")
    assert (cond["status"], cond["reason"]) == ("False", "GroupsNotReady") and cond["message"].startswith("0/1")
    assert api.sgld("pods")["status"]["readyReplicas"] == 0

    pod_passes = operator.metric_sum("sglang_operator_reconciles_total", kind="Pod")
    set_ready(api, leader, True)
    assert ready_is("True", "Ready=True once the pod is Ready")["reason"] == "AllGroupsReady"
    assert api.sgld("pods")["status"]["readyReplicas"] == 1
    set_ready(api, leader, False)
    assert ready_is("False", "Ready=False once the pod is not Ready")["reason"] == "GroupsNotReady"
    assert api.sgld("pods")["status"]["readyReplicas"] == 0
    assert operator.metric_sum("sglang_operator_reconciles_total", kind="Pod") >= pod_passes + 2


def test_drift_is_repaired_from_watch_events(operator, api):
    api.create(example("drift"))
    wait_for_api(lambda: all(api.children("drift").values()), what="children")
    fingerprint = api.lws("drift")["metadata"]["annotations"][FINGERPRINT]

    # Hand edits by another field manager: group size and the Service selector.
    api.patch_lws("drift", {"spec": {"leaderWorkerTemplate": {"size": 4}}})
    api.core.patch_namespaced_service("drift-api", api.ns, {"spec": {"selector": {"sglangfleet.dev/deployment": "other"}}})
    wait_for_api(lambda: api.lws("drift")["spec"]["leaderWorkerTemplate"]["size"] == 1
             and api.service("drift-api")["spec"]["selector"]["sglangfleet.dev/deployment"] == "drift",
             timeout=5, what="the edits to be reverted")
    assert api.lws("drift")["metadata"]["annotations"][FINGERPRINT] == fingerprint

    # A deleted child is recreated.
    old_uid = api.service("drift-api")["metadata"]["uid"]
    api.core.delete_namespaced_service("drift-api", api.ns)
    svc = wait_for_api(lambda: (s := api.service("drift-api")) and s["metadata"]["uid"] != old_uid and s,
                   timeout=5, what="the Service to be recreated")
    assert svc["spec"]["selector"] == rendered(api, "drift")["Service"]["spec"]["selector"]
    reasons = wait_for_api(lambda: {"DriftRepaired", "Recreated"} <= {e["reason"] for e in api.events("drift")}
                       and api.events("drift"), what="events")
    repaired = " ".join(e["message"] for e in reasons if e["reason"] == "DriftRepaired")
    assert "spec.leaderWorkerTemplate.size" in repaired and "spec.selector" in repaired
    assert operator.metric_sum("sglang_operator_api_writes_total", kind="Service", action="repaired") >= 1
    assert operator.metric_sum("sglang_operator_reconciles_total", kind="Service") >= 1
    assert operator.metric_sum("sglang_operator_reconcile_duration_seconds_count", kind="LeaderWorkerSet") >= 1
