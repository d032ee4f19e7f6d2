"""Which watch events cost a pass: news about what a pass reads, never the status churn around it."""
from __future__ import annotations

import copy

from sglang_operator.reconcile.triggers import Seen


def pod(ready=False, ip=None, **meta):
    return {"kind": "Pod", "metadata": {"uid": "p1", "resourceVersion": "1",
                                        "labels": {"leaderworkerset.sigs.k8s.io/group-index": "0"}, **meta},
            "status": {"phase": "Pending", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_pod_events_are_news_only_when_readiness_ip_labels_or_deletion_change():
    seen = Seen()
    p = pod()
    assert seen.news("ADDED", p)
    q = copy.deepcopy(p)
    q["status"]["phase"] = "Running"
    q["status"]["conditions"].append({"type": "PodScheduled", "status": "True"})
    q["metadata"]["resourceVersion"] = "2"
    assert not seen.news("MODIFIED", q)  # kubelet bookkeeping
    assert seen.news("MODIFIED", pod(ip="10.0.0.5"))
    assert seen.news("MODIFIED", pod(ready=True, ip="10.0.0.5"))
    assert not seen.news("MODIFIED", pod(ready=True, ip="10.0.0.5"))
    assert seen.news("MODIFIED", pod(ready=True, ip="10.0.0.5", deletionTimestamp="2026-01-01T00:00:00Z"))
    assert seen.news("DELETED", pod())
    assert seen.news("ADDED", pod())  # forgotten on deletion: the same uid again is news


def child(kind, spec, status=None, **meta):
    return {"kind": kind, "metadata": {"uid": kind, "resourceVersion": "1", "managedFields": [], **meta},
            "spec": spec, "status": status or {}}


def test_child_status_is_news_only_for_the_kinds_whose_status_feeds_ours():
    seen = Seen()
    assert seen.news(None, child("PodDisruptionBudget", {"minAvailable": 1}))
    assert not seen.news("MODIFIED", child("PodDisruptionBudget", {"minAvailable": 1}, {"currentHealthy": 1},
                                           resourceVersion="9", managedFields=[{"manager": "x"}]))
    assert seen.news("MODIFIED", child("PodDisruptionBudget", {"minAvailable": 2}))  # drift: repair it
    assert seen.news("MODIFIED", child("PodDisruptionBudget", {"minAvailable": 2}, labels={"x": "y"}))
    assert seen.news(None, child("LeaderWorkerSet", {"replicas": 1}))
    assert seen.news("MODIFIED", child("LeaderWorkerSet", {"replicas": 1}, {"readyReplicas": 1}))
    assert not seen.news("MODIFIED", child("LeaderWorkerSet", {"replicas": 1}, {"readyReplicas": 1},
                                           resourceVersion="7"))


def test_what_our_own_apply_returned_is_no_news_until_it_changes():
    seen = Seen()
    created = child("Service", {"ports": [{"port": 30000}]})
    seen.note(created)
    assert not seen.news("ADDED", child("Service", {"ports": [{"port": 30000}]}, resourceVersion="2"))
    # someone else's edit after our write is still the drift the pass repairs
    assert seen.news("MODIFIED", child("Service", {"ports": [{"port": 8080}]}, resourceVersion="3"))
    seen.note({"kind": "Service", "metadata": {}})  # no uid (not an object): nothing noted, no error
    assert seen.news("DELETED", created)
    assert seen.news("ADDED", created)  # a deletion forgets the note too


def test_the_reconcilers_kube_notes_whole_object_applies_not_status_writes():
    from sglang_operator.kube.client import Kube

    noted = []
    kube = Kube(None, "m", applied=noted.append)
    kube._call = lambda *a, **kw: (200, {"kind": "Service", "metadata": {"uid": "u", "name": "s"}})
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"}}
    kube.apply(obj)
    kube.apply(obj, subresource="status")
    assert noted == [{"kind": "Service", "metadata": {"uid": "u", "name": "s"}}]


def test_deployment_events_are_news_when_a_user_changed_it_not_when_its_status_was_written():
    seen = Seen()
    d = {"kind": "SGLangDeployment", "metadata": {"uid": "d1", "generation": 1, "resourceVersion": "1"},
         "spec": {"model": {"path": "/m"}}}
    assert seen.news(None, d)  # the initial listing: every object's first pass
    written = copy.deepcopy(d)
    written["metadata"]["resourceVersion"] = "2"
    written["status"] = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}]}
    assert not seen.news("MODIFIED", written)  # our own status write (or the autoscaler's)
    edited = copy.deepcopy(written)
    edited["spec"]["model"]["path"], edited["metadata"]["generation"] = "/n", 2
    assert seen.news("MODIFIED", edited)
    labelled = copy.deepcopy(edited)
    labelled["metadata"]["labels"] = {"team": "a"}
    assert seen.news("MODIFIED", labelled)
    deleting = copy.deepcopy(labelled)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert seen.news("MODIFIED", deleting)
