"""Reconciler passes over an in-memory API (fake_kube.py): what one pass writes, that a second
writes nothing, how problems end, and that the replica hand-off is the injected one's."""
from __future__ import annotations

from datetime import datetime, timezone

from sglang_operator.api.lws import LWS_KIND
from sglang_operator.kube.client import lws_ref, sgld_ref
from sglang_operator.reconcile.handoff import ReconcilerOwnsReplicas
from sglang_operator.reconcile.reconciler import Reconciler
from sglang_operator.reconcile.router import router_refs

from .cases import REPO, load_example
from .fake_kube import FakeKube
from .lws_pods import group, pod

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def sgld(kube: FakeKube, name: str = "tiny", **spec) -> dict:
    m = load_example(REPO / "examples" / "cpu-tiny.yaml")
    m["metadata"] = {"name": name, "namespace": "ns", "generation": 1}
    m["spec"].update(spec)
    return kube.put(m)


def reconciler(kube: FakeKube, **kw) -> tuple[Reconciler, list]:
    posted: list = []
    return Reconciler(kube, post=lambda parent, e: posted.append(e), clock=lambda: T0, **kw), posted


def conditions(kube: FakeKube, name: str = "tiny") -> dict[str, tuple[str, str]]:
    st = kube.get(sgld_ref("ns", name))["status"]
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def test_first_pass_creates_the_children_and_a_status_then_nothing_is_written():
    kube = FakeKube()
    sgld(kube, parallelism={"dp": 2})
    r, posted = reconciler(kube)
    out = r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    reads = list(kube.reads)
    assert out.problem is None and out.status_written
    assert [(k, s) for k, _, s in kube.writes] == [("LeaderWorkerSet", ""), ("Service", ""),
                                                   ("PodDisruptionBudget", ""), ("SGLangDeployment", "status")]
    lws = kube.get(lws_ref("ns", "tiny"))
    assert lws["spec"]["replicas"] == 2 and lws["metadata"]["ownerReferences"][0]["kind"] == "SGLangDeployment"
    st = kube.get(sgld_ref("ns", "tiny"))["status"]
    assert st["desiredReplicas"] == 2 and st["observedGeneration"] == 1
    assert conditions(kube)["Ready"] == ("False", "GroupsNotReady")
    assert [e.reason for e in posted] == ["Created"]
    # A pass that had to create the groups looks for no router left by an earlier one (none could be).
    assert not set(reads) & set(router_refs("ns", "tiny"))
    # A first pass reads only its parent: the children of a never-reconciled object are applied blind.
    assert reads == [sgld_ref("ns", "tiny")]
    assert [ref.kind for ref in kube.blind] == ["LeaderWorkerSet", "Service", "PodDisruptionBudget"]

    writes = len(kube.writes)
    again = r.reconcile("ns", "tiny", trigger="Resync")
    assert again.problem is None and not again.changes and not again.status_written and len(kube.writes) == writes


def test_an_interrupted_first_pass_is_completed_without_claiming_to_create_what_exists():
    kube = FakeKube()
    sgld(kube)
    r, posted = reconciler(kube)
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    parent = kube.get(sgld_ref("ns", "tiny"))
    del parent["status"]  # the first pass applied the children, then died before its status write
    kube.put(parent)
    lws_version = kube.get(lws_ref("ns", "tiny"))["metadata"]["resourceVersion"]
    posted.clear()
    out = r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    assert out.problem is None and out.changes == [] and out.status_written
    assert "Created" not in [e.reason for e in posted]
    assert kube.get(sgld_ref("ns", "tiny"))["status"]["observedGeneration"] == 1
    assert kube.get(lws_ref("ns", "tiny"))["metadata"]["resourceVersion"] != lws_version  # applied over
    # Now it has been reconciled: the next passes read the children and write nothing.
    writes = len(kube.writes)
    r.reconcile("ns", "tiny", trigger="Resync")
    assert len(kube.writes) == writes and lws_ref("ns", "tiny") in kube.reads


def test_lws_status_flows_into_ours_and_an_edit_is_repaired():
    kube = FakeKube(pods=group(0, lws="tiny"))
    sgld(kube)
    r, posted = reconciler(kube)
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    lws = kube.get(lws_ref("ns", "tiny"))
    lws["status"] = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
    lws["spec"]["startupPolicy"] = "LeaderReady"  # someone's hand edit
    kube.put(lws)
    out = r.reconcile("ns", "tiny", trigger=LWS_KIND)
    assert [(c.ref.kind, c.action) for c in out.changes] == [(LWS_KIND, "repaired")]
    assert kube.get(lws_ref("ns", "tiny"))["spec"]["startupPolicy"] == "LeaderCreated"
    assert conditions(kube)["Ready"] == ("True", "AllGroupsReady")
    assert posted[-1].reason == "DriftRepaired"


def test_ready_follows_the_pods_even_when_the_lws_says_ready():
    kube = FakeKube()
    sgld(kube)
    r, _ = reconciler(kube)
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    lws = kube.get(lws_ref("ns", "tiny"))
    lws["status"] = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}  # what LWS v0.8.0 reports early
    kube.put(lws)
    kube.pods = group(0, lws="tiny", ready=False) + group(0, lws="other")  # another set's pods do not count
    r.reconcile("ns", "tiny", trigger=LWS_KIND)
    assert conditions(kube)["Ready"] == ("False", "GroupsNotReady")
    assert kube.get(sgld_ref("ns", "tiny"))["status"]["readyReplicas"] == 0

    writes = len(kube.writes)
    kube.pods[0] = pod(0, 0, lws="tiny")  # the kubelet marks the leader Ready
    out = r.reconcile("ns", "tiny", trigger="Pod")
    assert not out.changes and out.status_written
    assert kube.writes[writes:] == [("SGLangDeployment", "tiny", "status")]  # status only, no child re-applied
    assert conditions(kube)["Ready"] == ("True", "AllGroupsReady")
    assert kube.get(sgld_ref("ns", "tiny"))["status"]["readyReplicas"] == 1

    # A pod event that changes nothing the status shows (another pod, a label) costs no write.
    kube.pods.append({**pod(5, 0, lws="tiny"), "spec": {"nodeName": "n"}})
    assert not r.reconcile("ns", "tiny", trigger="Pod").status_written and len(kube.writes) == writes + 1

    kube.pods[0] = pod(0, 0, lws="tiny", ready=False)  # and back
    r.reconcile("ns", "tiny", trigger="Pod")
    assert conditions(kube)["Ready"] == ("False", "GroupsNotReady")
    assert [k for k, _, _ in kube.writes[writes + 1:]] == ["SGLangDeployment"]


def test_a_spec_the_renderer_rejects_is_degraded_and_not_retried():
    kube = FakeKube()
    sgld(kube, parallelism={"tp": 3, "gpusPerPod": 2})
    r, posted = reconciler(kube)
    out = r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    assert out.problem.reason == "InvalidSpec" and not out.problem.retry
    assert [k for k, _, _ in kube.writes] == ["SGLangDeployment"]  # status only
    assert conditions(kube)["Degraded"] == ("True", "InvalidSpec")
    assert [(e.type, e.reason) for e in posted] == [("Warning", "InvalidSpec")]


def test_a_missing_lws_api_is_degraded_and_retried():
    kube = FakeKube(missing_kinds=(LWS_KIND,))
    sgld(kube)
    r, _ = reconciler(kube)
    out = r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    assert out.problem.reason == "LeaderWorkerSetMissing" and out.problem.retry
    assert conditions(kube)["Degraded"] == ("True", "LeaderWorkerSetMissing")


def test_a_deleted_or_deleting_object_is_skipped():
    kube = FakeKube()
    r, _ = reconciler(kube)
    assert r.reconcile("ns", "gone", trigger="Resync").skipped
    m = sgld(kube)
    m["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube.put(m)
    assert r.reconcile("ns", "tiny", trigger="Resync").skipped and not kube.writes


class Recording(ReconcilerOwnsReplicas):
    def __init__(self):
        self.calls: list[str] = []

    def omit(self, spec):
        return {LWS_KIND: ("spec.replicas",)}

    def before(self, namespace, name, spec):
        self.calls.append("before")

    def after(self, spec, lws, created):
        self.calls.append(f"after created={created}")
        return lws


def test_the_injected_handoff_decides_who_sends_the_replicas():
    kube = FakeKube()
    sgld(kube, parallelism={"dp": 3})
    handoff = Recording()
    r, _ = reconciler(kube, handoff=handoff)
    r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    assert handoff.calls == ["before", "after created=True"]
    assert "replicas" not in kube.get(lws_ref("ns", "tiny"))["spec"]  # left to the other manager
    assert kube.get(sgld_ref("ns", "tiny"))["status"]["desiredReplicas"] == 1  # the LWS's default


def test_a_child_controlled_by_someone_else_is_not_taken_over():
    kube = FakeKube()
    sgld(kube)
    kube.put({"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "tiny-api", "namespace": "ns",
        "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "other", "controller": True}]}})
    r, _ = reconciler(kube)
    out = r.reconcile("ns", "tiny", trigger="SGLangDeployment")
    assert out.problem.reason == "ChildConflict" and "Deployment web" in out.problem.message
    assert conditions(kube)["Degraded"][1] == "ChildConflict"
