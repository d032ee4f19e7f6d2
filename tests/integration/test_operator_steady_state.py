"""Steady state costs no writes: 60 s with a converged SGLangDeployment, its Ready pod, its router
(spec.router: Deployment with a Ready pod, Service, worker ConfigMap listing the leader) and a
running operator; a pod event in the middle that changes nothing a pass reads costs neither writes
nor a pass.

Counted two ways: (1) resourceVersions of the SGLangDeployment and its children and the Events in the
namespace, (2) the API server's own `apiserver_request_total` counters for every write verb on the
resources the operator writes. The second is cluster-wide, so the window starts only once no other
namespace is being torn down (nothing else in the test bed writes those resources)."""
from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.support.kube import Api, resource_versions, wait_for_api
from tests.support.operator import Operator, example

from .pods import create_group, pdb_counted, set_ip
from .router import router_objects, router_pods, set_router_pods_ready, workers

pytestmark = pytest.mark.cluster

WINDOW = 60
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE"}
# Without --leader-elect (with it, the only writes are Lease renewals, by design). Not "leases" at
# all: the API server renews its own identity Lease every few seconds.
OPERATOR_RESOURCES = {"sglangdeployments", "leaderworkersets", "services", "poddisruptionbudgets", "events", "pods",
                      "deployments", "configmaps"}


def write_counts(api_client) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    resp = api_client.call_api("GET", f"{api_client.configuration.host}/metrics", header_params={"Accept": "text/plain"})
    resp.read()
    out: dict[tuple, float] = {}
    for fam in text_string_to_metric_families(resp.data.decode()):
        for s in fam.samples:
            if s.name == "apiserver_request_total" and s.labels.get("verb") in WRITE_VERBS \
                    and s.labels.get("resource") in OPERATOR_RESOURCES:
                # Summed: one key has a series per API group and version (core/v1 and events.k8s.io/v1
                # Events), and the order of series in a scrape is not stable.
                key = (s.labels["verb"], s.labels["resource"], s.labels.get("subresource", ""), s.labels.get("code"))
                out[key] = out.get(key, 0.0) + s.value
    return out


def event_counts(api: Api) -> dict[str, tuple[str, int]]:
    """Each Event's uid -> (who reported it, count)."""
    return {e.metadata.uid: (e.reporting_component or (e.source.component if e.source else "") or "", e.count or 1)
            for e in api.core.list_namespaced_event(api.ns).items}


def versions(api: Api) -> dict[str, str | None]:
    """resourceVersions of the SGLangDeployment, its children and its router's objects."""
    router = {f"router {k}": o["metadata"]["resourceVersion"] if o else None
              for k, o in router_objects(api, "steady").items()}
    return {**resource_versions(api, "steady"), **router}


def test_no_api_writes_in_steady_state(cluster, api_client, namespace, tmp_path):
    api = Api(api_client, namespace)
    # The periodic resync fires inside the window: steady state includes the safety net.
    op = Operator(cluster.kubeconfig, tmp_path, "-n", namespace, "--resync-seconds=20")
    try:
        api.create({**example("steady"), "spec": {**example("steady")["spec"], "router": {"enabled": True}}})
        wait_for_api(lambda: all(api.children("steady").values()) and all(router_objects(api, "steady").values()),
                     what="children")
        pods = create_group(api, "steady", 0, ready=True)
        set_ip(api, pods[0], "10.3.0.10")
        api.patch_lws_status("steady", {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1})
        wait_for_api(lambda: api.condition("steady", "Ready")["status"] == "True", what="Ready")
        wait_for_api(lambda: router_pods(api, "steady"), what="the router's pod")
        set_router_pods_ready(api, "steady", True)
        wait_for_api(lambda: workers(api, "steady") and api.condition("steady", "RouterReady")["status"] == "True",
                     timeout=15, what="RouterReady")
        pdb_counted(api, "steady", pods)
        core = client.CoreV1Api(api_client)
        wait_for_api(lambda: not [n for n in core.list_namespace().items if n.status.phase == "Terminating"],
                 timeout=60, interval=1, what="other test namespaces to finish terminating")
        time.sleep(2)  # let the last events of the convergence land

        rvs, events, counts_before = versions(api), len(api.events()), event_counts(api)
        counts = write_counts(api_client)
        reconciles = op.metric_sum("sglang_operator_reconciles_total")
        skipped = op.metric_sum("sglang_operator_watch_events_skipped_total", kind="Pod")
        requests = {m: op.metric_sum("sglang_operator_api_requests_total", method=m) for m in ("GET", "PATCH", "POST")}
        time.sleep(WINDOW / 2)
        # The kubelet's kind of pod update that leaves readiness alone: the operator reads, writes nothing.
        api.core.patch_namespaced_pod_status(pods[0], namespace, {"status": {"conditions": [
            {"type": "PodScheduled", "status": "True"}]}})
        time.sleep(WINDOW / 2)
        delta = {k: v - counts.get(k, 0) for k, v in write_counts(api_client).items() if v != counts.get(k, 0)}

        assert versions(api) == rvs
        assert len(api.events()) == events
        # The leader has an IP but no node (no kubelet), so the endpoint-slice controller keeps
        # retrying the -api Service and bumps its Warning's count (an Event PATCH) with backoff.
        bumped = {u: (comp, n - counts_before[u][1]) for u, (comp, n) in event_counts(api).items()
                  if u in counts_before and n != counts_before[u][1]}
        assert not [c for c, _ in bumped.values() if c == "sglang-operator"], bumped
        foreign = sum(d for _, d in bumped.values())
        if foreign:
            assert delta.pop(("PATCH", "events", "", "200"), 0) == foreign, (delta, bumped)
        ours = {k: v for k, v in delta.items() if k != ("PATCH", "pods", "status", "200")}
        assert delta.get(("PATCH", "pods", "status", "200")) == 1, delta  # the test's own pod update
        assert ours == {}, f"API writes during {WINDOW}s of steady state: {ours}"
        # The operator was not idle by accident: it saw the pod event and dropped it (nothing a pass
        # reads changed), and the resync ran and found nothing to do ...
        assert op.metric_sum("sglang_operator_watch_events_skipped_total", kind="Pod") > skipped
        assert op.metric_sum("sglang_operator_reconciles_total", kind="Resync") >= 2
        assert op.metric_sum("sglang_operator_reconciles_total") > reconciles
        # The operator's own request counter agrees: the resync's passes read, nothing was written.
        after = {m: op.metric_sum("sglang_operator_api_requests_total", method=m) for m in requests}
        assert after["GET"] > requests["GET"] and {m: after[m] - requests[m] for m in ("PATCH", "POST")} == \
            {"PATCH": 0, "POST": 0}, (requests, after)
        # ... and it still reacts at once.
        api.core.patch_namespaced_service("steady-api", namespace, {"spec": {"selector": {"sglangfleet.dev/role": "x"}}})
        wait_for_api(lambda: "sglangfleet.dev/role" not in api.service("steady-api")["spec"]["selector"], timeout=5,
                 what="drift repair after the window")
        assert op.alive()
    finally:
        api.delete_all_sglds()
        op.stop()
