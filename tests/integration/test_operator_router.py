"""spec.router on the real control plane: the operator creates the router's Deployment, Service and
worker ConfigMap; the ConfigMap lists exactly the Ready, non-terminating leaders (pod uid and
http://podIP:30000) and drops one within seconds of it turning not-Ready, terminating or being
replaced (new uid, same name and IP), never listing it again; RouterReady follows the router
Deployment's readiness with its reasons; Events are posted; turning the router off (or removing
spec.router) deletes its three objects.

No kubelet: the leader pods are made by the test with LWS's labels (pods.py) and the router pods by
the Deployment's own ReplicaSet; readiness and IPs are set through /status as a kubelet reports
them. The router Deployment's readiness is simulated through its pods, not by patching its
/status: the deployment controller (running here) rewrites readyReplicas from its ReplicaSet at the
next sync, which that very patch triggers."""
from __future__ import annotations

import time

import pytest

from sglang_operator.api.validate import parse_spec
from sglang_operator.render.router import render_router_deployment, render_router_service

from tests.support.kube import Api, subset, wait_for_api
from tests.support.operator import Operator, example

from .pods import create_group, set_ip, set_ready
from .router import WorkerHistory, router_objects, router_pods, set_router_pods_ready, workers

pytestmark = pytest.mark.cluster

PROMPT = 5  # seconds a pod change may take to reach the worker list ("within a few seconds")


@pytest.fixture
def operator(cluster, namespace, tmp_path):
    op = Operator(cluster.kubeconfig, tmp_path, "-n", namespace)
    yield op
    assert op.alive(), f"the operator died:\n{op.log_tail()}"
    op.stop()


def routed(name: str, dp: int = 2) -> dict:
    m = example(name)
    m["spec"]["parallelism"] = {"dp": dp}
    m["spec"]["router"] = {"enabled": True}
    return m


def ids(api: Api, name: str) -> list[str] | None:
    w = workers(api, name)
    return None if w is None else [r["id"] for r in w]


def router_ready(api: Api, name: str) -> tuple[str, str] | None:
    c = api.condition(name, "RouterReady")
    return (c["status"], c["reason"]) if c else None


def leader(api: Api, name: str, group: int, ip: str, *, ready: bool = True) -> tuple[str, str]:
    """Group `group`'s leader (size 1) with an IP and the given readiness: (pod name, uid)."""
    [pod] = create_group(api, name, group)
    set_ip(api, pod, ip)
    set_ready(api, pod, ready)
    return pod, api.core.read_namespaced_pod(pod, api.ns).metadata.uid


def test_router_objects_worker_list_and_router_ready(cluster, operator, api):
    sgld = api.create(routed("r"))
    wait_for_api(lambda: all(router_objects(api, "r").values()), what="the router's Deployment, Service and ConfigMap")
    objs, spec = router_objects(api, "r"), parse_spec(sgld["spec"])
    assert subset(objs["Deployment"], render_router_deployment("r", api.ns, spec)) == []
    assert subset(objs["Service"], render_router_service("r", api.ns, spec)) == []
    for kind, obj in objs.items():
        assert [(o["kind"], o["uid"], o["controller"]) for o in obj["metadata"]["ownerReferences"]] == [
            ("SGLangDeployment", sgld["metadata"]["uid"], True)], kind
    assert workers(api, "r") == []
    wait_for_api(lambda: router_ready(api, "r") == ("False", "NoWorkers"), what="RouterReady NoWorkers")
    wait_for_api(lambda: router_pods(api, "r"), what="the router Deployment's pod (its ReplicaSet's)")

    history = WorkerHistory(api, "r")
    try:
        p0, u0 = leader(api, "r", 0, "10.1.0.10")
        p1, u1 = leader(api, "r", 1, "10.1.0.11", ready=False)
        wait_for_api(lambda: workers(api, "r") == [{"id": u0, "url": "http://10.1.0.10:30000"}], timeout=PROMPT,
                     what="the Ready leader listed (the not-Ready one not)")
        wait_for_api(lambda: router_ready(api, "r") == ("False", "RouterPodsNotReady"), what="RouterPodsNotReady")
        set_ready(api, p1, True)
        wait_for_api(lambda: ids(api, "r") == [u0, u1], timeout=PROMPT, what="group 1's leader listed once Ready")

        # The router's pod becomes Ready: its ReplicaSet, then its Deployment, count it.
        set_router_pods_ready(api, "r", True)
        wait_for_api(lambda: router_ready(api, "r") == ("True", "Routing"), timeout=15, what="RouterReady Routing")
        assert "2 workers" in api.condition("r", "RouterReady")["message"]
        header, row = cluster.kubectl("get", "sgld", "r", "-n", api.ns).stdout.splitlines()[:2]
        assert row[header.index("ROUTER"):].split()[0] == "Routing"  # kubectl get sgld tells it

        # Not Ready: out within seconds.
        set_ready(api, p1, False)
        wait_for_api(lambda: ids(api, "r") == [u0], timeout=PROMPT, what="a not-Ready leader dropped")

        # Terminating (a finalizer holds the deleted pod, still Ready): out.
        api.core.patch_namespaced_pod(p1, api.ns, {"metadata": {"finalizers": ["test/hold"]}})
        set_ready(api, p1, True)
        wait_for_api(lambda: ids(api, "r") == [u0, u1], timeout=PROMPT, what="group 1 Ready again")
        t_term = time.monotonic()
        api.core.delete_namespaced_pod(p1, api.ns)
        wait_for_api(lambda: ids(api, "r") == [u0], timeout=PROMPT, what="a terminating leader dropped")
        api.core.patch_namespaced_pod(p1, api.ns, {"metadata": {"finalizers": None}})

        # Replaced: deleted, and a new pod under the same name with the same IP (a new uid).
        t_repl = time.monotonic()
        api.core.delete_namespaced_pod(p0, api.ns)
        wait_for_api(lambda: not [p for p in api.core.list_namespaced_pod(api.ns).items if p.metadata.name == p0],
                     what="the old leader gone")
        p0b, u0b = leader(api, "r", 0, "10.1.0.10")
        assert p0b == p0 and u0b != u0
        wait_for_api(lambda: workers(api, "r") == [{"id": u0b, "url": "http://10.1.0.10:30000"}], timeout=PROMPT,
                     what="the replacement listed under its own uid")
        time.sleep(2)  # let any late pass land before reading the history
    finally:
        history.stop()
    assert any(r["id"] == u0b for _, w in history.versions for r in w), "the watch missed the history"
    assert history.listed_again(u1, t_term) == [], "a terminating leader came back into the worker list"
    assert history.listed_again(u0, t_repl) == [], "a replaced leader came back into the worker list"
    assert not [w for _, w in history.versions if len({r["url"] for r in w}) != len(w)], \
        "a URL was listed twice (a dead worker beside its replacement)"
    wait_for_api(lambda: router_ready(api, "r") == ("True", "Routing"), what="Routing with the replacement")

    # The router's pods stop being Ready, then it is scaled to zero.
    set_router_pods_ready(api, "r", False)
    wait_for_api(lambda: router_ready(api, "r") == ("False", "RouterPodsNotReady"), timeout=15,
                 what="RouterReady back to RouterPodsNotReady")
    api.patch_sgld("r", {"spec": {"router": {"replicas": 0}}})
    wait_for_api(lambda: router_ready(api, "r") == ("False", "ScaledToZero"), what="RouterReady ScaledToZero")

    events = {(e["type"], e["reason"]) for e in api.events("r")}
    assert {("Normal", "Created"), ("Normal", "RouterWorkers"), ("Normal", "RouterReady"),
            ("Warning", "RouterNotReady")} <= events, events
    messages = [e["message"] for e in api.events("r") if e["reason"] == "RouterWorkers"]
    assert any("http://10.1.0.10:30000" in m for m in messages), messages


def test_turning_the_router_off_deletes_its_objects(operator, api):
    api.create(routed("off", dp=1))
    wait_for_api(lambda: all(router_objects(api, "off").values()), what="the router's objects")
    wait_for_api(lambda: router_pods(api, "off"), what="the router's pod")
    leader(api, "off", 0, "10.1.1.10")
    wait_for_api(lambda: workers(api, "off"), timeout=PROMPT, what="the leader listed")

    api.patch_sgld("off", {"spec": {"router": {"enabled": False}}})
    wait_for_api(lambda: not any(router_objects(api, "off").values()), timeout=10,
                 what="the router's Deployment, Service and ConfigMap deleted")
    wait_for_api(lambda: router_ready(api, "off") is None, what="RouterReady gone from the status")
    wait_for_api(lambda: not router_pods(api, "off"), timeout=30, what="the router's pods collected")
    assert api.service("off-api") is not None and api.lws("off")
    assert "RouterRemoved" in {e["reason"] for e in api.events("off")}

    # On again, then spec.router removed altogether: the same.
    api.patch_sgld("off", {"spec": {"router": {"enabled": True}}})
    wait_for_api(lambda: all(router_objects(api, "off").values()), what="the router's objects again")
    wait_for_api(lambda: [r["url"] for r in workers(api, "off")] == ["http://10.1.1.10:30000"],
                 timeout=PROMPT, what="the leader listed again")
    # A router turned on later is created, not "recreated" (nobody deleted it).
    assert "Recreated" not in {e["reason"] for e in api.events("off")}
    api.patch_sgld("off", {"spec": {"router": None}})  # a merge patch: null removes the field
    wait_for_api(lambda: not any(router_objects(api, "off").values()), timeout=10,
                 what="the router's objects deleted with spec.router removed")
