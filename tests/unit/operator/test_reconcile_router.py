"""The router's part of a pass over an in-memory API (fake_kube.py): the worker ConfigMap follows the
leader pods (also in a pass that ends with a problem), RouterReady follows the Deployment, and
turning spec.router off deletes exactly our router objects, once."""
from __future__ import annotations

import json

from sglang_operator.kube.client import Ref, sgld_ref

from .fake_kube import FakeKube
from .lws_pods import pod
from .test_reconciler import conditions, reconciler, sgld

ROUTER = {"enabled": True}
DEPLOYMENT = Ref("apps/v1", "Deployment", "ns", "tiny-router")
SERVICE = Ref("v1", "Service", "ns", "tiny-router")
CONFIGMAP = Ref("v1", "ConfigMap", "ns", "tiny-router-workers")


def leader(g: int, uid: str, ip: str, **kw) -> dict:
    p = pod(g, 0, lws="tiny", **kw)
    p["metadata"]["uid"] = uid
    p["status"]["podIP"] = ip
    return p


def workers(kube: FakeKube) -> list[dict]:
    return json.loads(kube.get(CONFIGMAP)["data"]["workers.json"])["workers"]


def set_spec(kube: FakeKube, **spec) -> None:
    obj = kube.get(sgld_ref("ns", "tiny"))
    obj["spec"].update(spec)
    obj["metadata"]["generation"] += 1
    kube.put(obj)


def routed(kube: FakeKube, pods: list) -> tuple:
    """A first pass (it creates the LWS, which has no pods yet), then `pods` come."""
    sgld(kube, router=ROUTER)
    r, posted = reconciler(kube)
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    kube.pods = pods
    r.reconcile("ns", "tiny", trigger="Pod")
    return r, posted


def test_worker_list_follows_ready_leaders_and_router_ready_the_deployment():
    kube = FakeKube()
    r, posted = routed(kube, [leader(0, "u0", "10.0.0.1"), leader(1, "u1", "10.0.0.2", ready=False)])
    assert workers(kube) == [{"id": "u0", "url": "http://10.0.0.1:30000"}]
    assert conditions(kube)["RouterReady"] == ("False", "RouterPodsNotReady")
    assert {"Created", "RouterWorkers"} <= {e.reason for e in posted}
    writes = len(kube.writes)
    r.reconcile("ns", "tiny", trigger="Resync")
    assert len(kube.writes) == writes  # steady state

    dep = kube.get(DEPLOYMENT)
    kube.put({**dep, "status": {"readyReplicas": 1}})
    kube.pods = [leader(0, "u0b", "10.0.0.1"), leader(1, "u1", "10.0.0.2")]  # group 0 restarted
    posted.clear()
    r.reconcile("ns", "tiny", trigger="Pod")
    assert [w["id"] for w in workers(kube)] == ["u0b", "u1"]
    assert conditions(kube)["RouterReady"] == ("True", "Routing")
    assert {"RouterWorkers", "RouterReady"} <= {e.reason for e in posted}


def test_turning_the_router_on_later_says_created_not_recreated():
    kube = FakeKube(pods=[leader(0, "u0", "10.0.0.1")])
    sgld(kube)
    r, posted = reconciler(kube)
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    set_spec(kube, router=ROUTER)
    posted.clear()
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    assert [(e.reason, e.message) for e in posted if e.reason in ("Created", "Recreated")] == [
        ("Created", "Created Deployment tiny-router, Service tiny-router")]


def test_turning_the_router_off_deletes_its_objects_once():
    kube = FakeKube()
    r, posted = routed(kube, [leader(0, "u0", "10.0.0.1")])
    assert all(kube.get(ref) for ref in (DEPLOYMENT, SERVICE, CONFIGMAP))
    set_spec(kube, router={"enabled": False})
    posted.clear()
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    assert [kube.get(ref) for ref in (DEPLOYMENT, SERVICE, CONFIGMAP)] == [None, None, None]
    assert kube.get(Ref("v1", "Service", "ns", "tiny-api")) is not None
    assert "RouterReady" not in conditions(kube)
    assert [e.message for e in posted if e.reason == "RouterRemoved"] == [
        "spec.router is off: deleted Deployment tiny-router, Service tiny-router, ConfigMap tiny-router-workers"]
    # Done: later passes neither write nor look for router objects.
    writes, kube.reads = len(kube.writes), []
    r.reconcile("ns", "tiny", trigger="Pod")
    assert len(kube.writes) == writes and not {DEPLOYMENT, SERVICE, CONFIGMAP} & set(kube.reads)


def test_only_our_own_router_objects_are_deleted():
    kube = FakeKube()
    sgld(kube)
    kube.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tiny-router-workers", "namespace": "ns"}})
    r, posted = reconciler(kube)
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")  # first pass: the spec is new, so it looks
    assert kube.get(CONFIGMAP) is not None and not [e for e in posted if e.reason == "RouterRemoved"]


def test_a_forbidden_delete_is_degraded_and_retried_until_it_succeeds():
    kube = FakeKube()
    r, _ = routed(kube, [leader(0, "u0", "10.0.0.1")])
    set_spec(kube, router={"enabled": False})
    kube.delete_status = 403
    out = r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    assert out.problem is not None and out.problem.reason == "RouterCleanupFailed" and out.problem.retry
    assert conditions(kube)["Degraded"] == ("True", "RouterCleanupFailed")
    assert conditions(kube)["RouterReady"] == ("False", "Removing")
    kube.delete_status = None
    assert r.reconcile("ns", "tiny", trigger="Resync").problem is None
    assert kube.get(DEPLOYMENT) is None and "RouterReady" not in conditions(kube)
    assert conditions(kube)["Degraded"][0] == "False"


def test_a_rejected_spec_still_drops_a_restarted_leader_from_the_worker_list():
    kube = FakeKube()
    r, _ = routed(kube, [leader(0, "u0", "10.0.0.1"), leader(1, "u1", "10.0.0.2")])
    obj = kube.get(sgld_ref("ns", "tiny"))
    obj["spec"]["parallelism"] = {"dp": "not a number"}
    obj["metadata"]["generation"] += 1
    kube.put(obj)
    kube.pods = [leader(1, "u1", "10.0.0.2")]  # group 0's leader is gone
    out = r.reconcile("ns", "tiny", trigger="Pod")
    assert out.problem is not None and out.problem.reason == "InvalidSpec"
    assert [w["id"] for w in workers(kube)] == ["u1"]
    assert conditions(kube)["RouterReady"][0] == "False" and kube.get(DEPLOYMENT) is not None
