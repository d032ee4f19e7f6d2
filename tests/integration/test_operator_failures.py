"""Failure behaviour against the real control plane: the LeaderWorkerSet CRD missing, a spec the API
server accepts but the renderer rejects, the operator killed mid-reconcile, the API server gone.

Each test runs its own operator on its own namespace."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
from kubernetes import client, watch

from sglang_operator.api.lws import LWS_CRD
from sglang_operator.api.names import CRD_NAME as SGLD_CRD
from tests.support.kube import Api, resource_versions, settled_versions, wait_for_api
from tests.support.operator import Operator, Proxy, admin_kubeconfig_via, example

pytestmark = pytest.mark.cluster


@pytest.fixture
def start_operator(cluster, namespace, tmp_path):
    started: list[Operator] = []

    def start(*args: str, kubeconfig=None) -> Operator:
        op = Operator(kubeconfig or cluster.kubeconfig, tmp_path, "--namespace", namespace, *args,
                      name=f"operator{len(started)}")
        started.append(op)
        return op

    yield start
    if any(op.alive() for op in started):
        Api(cluster.api_client(), namespace).delete_all_sglds()
    for op in started:
        if op.alive():
            op.stop()


def served(api_client, group_version: str, plural: str) -> bool:
    resp = api_client.call_api("GET", f"{api_client.configuration.host}/apis/{group_version}",
                               header_params={"Accept": "application/json"})
    resp.read()
    return resp.status == 200 and any(r["name"] == plural for r in json.loads(resp.data)["resources"])


def test_missing_lws_crd_degrades_then_recovers_when_installed(cluster, api, api_client, start_operator):
    ext = client.ApiextensionsV1Api(api_client)
    ext.delete_custom_resource_definition(LWS_CRD)
    try:
        wait_for_api(lambda: not served(api_client, "leaderworkerset.x-k8s.io/v1", "leaderworkersets"), timeout=30, interval=0.3,
                 what="the LWS API to disappear")
        op = start_operator()
        api.create(example("nolws"))
        degraded = wait_for_api(lambda: (c := api.condition("nolws", "Degraded")) and c["status"] == "True" and c,
                            timeout=15, what="Degraded")
        assert degraded["reason"] == "LeaderWorkerSetMissing"
        assert "Install LeaderWorkerSet" in degraded["message"] and LWS_CRD in degraded["message"]
        assert api.condition("nolws", "Ready")["status"] == "False"
        # Nothing half-applied: the LWS comes first, and without it nothing else is written.
        assert api.service("nolws-api") is None and api.pdb("nolws") is None
        warnings = wait_for_api(lambda: [e for e in api.events("nolws") if e["type"] == "Warning"], what="a Warning")
        assert warnings[0]["reason"] == "LeaderWorkerSetMissing"
        # Retries with backoff, no crash loop.
        wait_for_api(lambda: op.metric_sum("sglang_operator_reconcile_errors_total", reason="LeaderWorkerSetMissing") >= 3,
                 timeout=15, what="retries")
        assert op.alive()
    finally:
        cluster.install_crds()  # keeps every other test's world intact
    wait_for_api(lambda: all(api.children("nolws").values()), timeout=20, what="the children once LWS is installed")
    wait_for_api(lambda: api.condition("nolws", "Degraded")["status"] == "False", what="Degraded=False")
    assert {"Recovered"} <= {e["reason"] for e in api.events("nolws")}
    assert op.alive()


def test_spec_accepted_by_the_api_but_rejected_by_the_renderer(cluster, api, api_client, start_operator):
    """Version skew: the cluster's CRD lacks a rule that the operator's models enforce (here the
    parallelism rule, removed for the duration of the test)."""
    start_operator()
    api.create(example("skew"))
    wait_for_api(lambda: all(api.children("skew").values()), what="children")
    before = resource_versions(api, "skew")

    ext = client.ApiextensionsV1Api(api_client)
    path = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/parallelism/x-kubernetes-validations"
    ext.patch_custom_resource_definition(SGLD_CRD, [{"op": "remove", "path": path}])
    try:
        def accepted() -> bool:  # the API server may take a moment to serve the looser schema
            try:
                api.patch_sgld("skew", {"spec": {"parallelism": {"dp": 3, "tp": 3, "gpusPerPod": 2}}})
                return True
            except client.ApiException as e:
                assert e.status == 422, e
                return False
        wait_for_api(accepted, timeout=15, interval=0.5, what="the looser CRD")
    finally:
        cluster.install_crds()

    degraded = wait_for_api(lambda: (c := api.condition("skew", "Degraded")) and c["status"] == "True" and c,
                        what="Degraded")
    assert degraded["reason"] == "InvalidSpec" and "gpusPerPod must divide tp*pp" in degraded["message"]
    assert api.condition("skew", "Progressing")["reason"] == "InvalidSpec"
    assert api.sgld("skew")["status"]["observedGeneration"] == 2
    after = resource_versions(api, "skew")
    assert {k: v for k, v in after.items() if k != "SGLangDeployment"} == \
           {k: v for k, v in before.items() if k != "SGLangDeployment"}, "nothing may be half-applied"
    assert api.lws("skew")["spec"]["replicas"] == 1

    api.patch_sgld("skew", {"spec": {"parallelism": {"gpusPerPod": 3}}})  # valid again
    wait_for_api(lambda: api.condition("skew", "Degraded")["status"] == "False", what="recovery")
    assert api.lws("skew")["spec"]["replicas"] == 3


def test_operator_killed_mid_reconcile_leaves_no_duplicates_or_orphans(api, api_client, start_operator, namespace):
    for i in range(3):
        api.create(example(f"r{i}"))
    op = start_operator()
    # Freeze the operator the moment its first child appears (SIGSTOP is immediate), then kill it.
    w = watch.Watch()
    for _ in w.stream(client.CustomObjectsApi(api_client).list_namespaced_custom_object,
                      "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", timeout_seconds=20):
        os.kill(op.proc.pid, signal.SIGSTOP)
        w.stop()
    op.kill()
    partial = {f"r{i}": {k: v is not None for k, v in api.children(f"r{i}").items()} for i in range(3)}
    assert any(v for c in partial.values() for v in c.values()), "the operator was killed before writing anything"

    start_operator()
    for i in range(3):
        wait_for_api(lambda: all(api.children(f"r{i}").values()) and api.sgld(f"r{i}").get("status", {}).get("conditions"),
                 what=f"r{i} to converge after the restart (partial state was {partial})")
    lws = api.custom.list_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets")["items"]
    svcs = api.core.list_namespaced_service(namespace).items
    pdbs = api.policy.list_namespaced_pod_disruption_budget(namespace).items
    assert sorted(o["metadata"]["name"] for o in lws) == ["r0", "r1", "r2"]
    assert sorted(s.metadata.name for s in svcs) == ["r0-api", "r1-api", "r2-api"]
    assert sorted(p.metadata.name for p in pdbs) == ["r0", "r1", "r2"]
    uids = {f"r{i}": api.sgld(f"r{i}")["metadata"]["uid"] for i in range(3)}
    owners = [o["metadata"]["ownerReferences"] for o in lws] + \
             [[r.to_dict() for r in x.metadata.owner_references] for x in svcs + pdbs]
    assert all(len(refs) == 1 and refs[0]["uid"] in uids.values() for refs in owners), owners


def test_resume_after_a_clean_restart_writes_nothing(api, start_operator):
    op = start_operator()
    api.create(example("resume"))
    wait_for_api(lambda: all(api.children("resume").values()) and api.condition("resume", "Ready"), what="convergence")
    before = settled_versions(api, "resume")
    assert op.stop() == 0
    op2 = start_operator()
    wait_for_api(lambda: op2.metric_sum("sglang_operator_reconciles_total", kind="SGLangDeployment") >= 1,
             what="the resume handler to run")
    assert resource_versions(api, "resume") == before


@pytest.fixture
def proxy(cluster):
    p = Proxy(int(cluster.server.rsplit(":", 1)[1]))
    yield p
    p.down()


def test_operator_recovers_when_the_api_server_comes_back(cluster, proxy, api, start_operator, tmp_path):
    op = start_operator(kubeconfig=admin_kubeconfig_via(cluster, proxy.server, tmp_path / "via-proxy.kubeconfig"))
    api.create(example("apidown"))
    wait_for_api(lambda: all(api.children("apidown").values()), what="children")
    wait_for_api(lambda: (api.sgld("apidown").get("status") or {}).get("observedGeneration") == 1,
             what="first status")  # written after the children: wait, or the cut may come between

    proxy.down()
    api.patch_sgld("apidown", {"spec": {"parallelism": {"dp": 2}}})  # the operator cannot see this yet
    api.core.delete_namespaced_service("apidown-api", api.ns)
    time.sleep(5)  # the outage is real: nothing moves while the operator cannot reach the API server
    assert api.lws("apidown")["spec"]["replicas"] == 1 and api.service("apidown-api") is None
    assert api.sgld("apidown")["status"]["observedGeneration"] == 1
    proxy.up()

    wait_for_api(lambda: api.lws("apidown")["spec"]["replicas"] == 2 and api.service("apidown-api"), timeout=40,
             interval=0.5, what="convergence after the API server came back")
    assert op.alive()
