"""status: conditions as a pure function of (spec outcome, LWS status and pods, problem)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sglang_operator.kube.conditions import find as condition
from sglang_operator.reconcile.status import Observed, Problem, changed, compute_status, conditions

from .lws_pods import group, pod, ready_pods

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
URL = "http://x-api.ns.svc:30000"


def lws(want: int, have: int = 0, ready: int = 0, updated: int | None = None) -> dict:
    return {"spec": {"replicas": want},
            "status": {"replicas": have, "readyReplicas": ready, "updatedReplicas": have if updated is None else updated}}


def obs(lws_obj=None, problem=None, desired=None, generation=3, endpoint=URL, pods=None) -> Observed:
    """By default the pods agree with the LWS: its readyReplicas groups, every pod Ready."""
    want = desired if desired is not None else (lws_obj or {}).get("spec", {}).get("replicas")
    if pods is None:
        pods = ready_pods((lws_obj or {}).get("status", {}).get("readyReplicas", 0))
    return Observed("x", "ns", generation, want, endpoint, lws_obj, problem, pods)


def by_type(o: Observed) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in conditions(o)}


@pytest.mark.parametrize("lws_obj,expected", [
    (lws(2, 2, 2), {"Ready": ("True", "AllGroupsReady"), "Progressing": ("False", "Complete"),
                    "Degraded": ("False", "AsExpected")}),
    (lws(2, 0, 0), {"Ready": ("False", "GroupsNotReady"), "Progressing": ("True", "ScalingUp")}),
    (lws(2, 2, 1), {"Ready": ("False", "GroupsNotReady"), "Progressing": ("True", "WaitingForGroups")}),
    (lws(1, 2, 2), {"Ready": ("True", "AllGroupsReady"), "Progressing": ("True", "ScalingDown")}),
    (lws(3, 3, 3, updated=1), {"Ready": ("True", "AllGroupsReady"), "Progressing": ("True", "RollingUpdate")}),
    (lws(3, 1, 1, updated=1), {"Ready": ("False", "GroupsNotReady"), "Progressing": ("True", "ScalingUp")}),
    (lws(0, 0, 0), {"Ready": ("False", "ScaledToZero"), "Progressing": ("False", "Complete")}),
    (None, {"Ready": ("False", "Creating"), "Progressing": ("True", "Creating"), "Degraded": ("False", "AsExpected")}),
])
def test_conditions_follow_the_leaderworkerset(lws_obj, expected):
    got = by_type(obs(lws_obj))
    assert {k: got[k] for k in expected} == expected


def test_missing_lws_crd_is_degraded_with_instructions():
    p = Problem("LeaderWorkerSetMissing", "install LeaderWorkerSet (https://lws.sigs.k8s.io/docs/installation/)")
    got = {c["type"]: c for c in conditions(obs(None, p, desired=1))}
    assert got["Degraded"]["status"] == "True" and "install LeaderWorkerSet" in got["Degraded"]["message"]
    assert got["Ready"]["reason"] == "LeaderWorkerSetMissing"
    assert got["Progressing"]["status"] == "False"


def test_rejected_spec_keeps_reporting_the_running_groups():
    p = Problem("InvalidSpec", "spec.x: bad", retry=False)
    st = compute_status(obs(lws(2, 2, 2), p, endpoint=None), {"endpoint": URL}, T0)
    got = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert got == {"Ready": ("True", "AllGroupsReady"), "Progressing": ("False", "InvalidSpec"),
                   "Degraded": ("True", "InvalidSpec")}
    assert st["endpoint"] == URL and st["readyReplicas"] == 2 and st["observedGeneration"] == 3


def test_status_fields():
    st = compute_status(obs(lws(3, 2, 1)), None, T0)
    assert st["replicas"] == 2 and st["readyReplicas"] == 1 and st["desiredReplicas"] == 3
    assert st["selector"] == "leaderworkerset.sigs.k8s.io/worker-index=0,sglangfleet.dev/deployment=x"
    assert st["endpoint"] == URL
    assert all(c["observedGeneration"] == 3 and c["lastTransitionTime"] == "2026-01-01T12:00:00Z"
               for c in st["conditions"])


def test_transition_time_moves_only_when_status_flips():
    first = compute_status(obs(lws(2, 2, 1)), None, T0)
    later = T0 + timedelta(minutes=5)
    same = compute_status(obs(lws(2, 2, 1)), first, later)
    assert same == first and not changed(first, same)
    ready = compute_status(obs(lws(2, 2, 2)), first, later)
    assert condition(ready, "Ready")["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert changed(first, ready)


def test_other_writers_fields_and_conditions_are_not_ours():
    mine = compute_status(obs(lws(1, 1, 1)), None, T0)
    stored = {**mine, "queueDepth": 4, "kopf": {"progress": {}},
              "conditions": mine["conditions"] + [{"type": "ScalingActive", "status": "True"}]}
    assert not changed(stored, mine)


def test_empty_messages_compare_equal_to_omitted_ones():
    mine = compute_status(obs(lws(1, 1, 1)), None, T0)
    stored = {**mine, "conditions": [{k: v for k, v in c.items() if v != ""} for c in mine["conditions"]]}
    assert not changed(stored, mine)


def test_ready_follows_the_pods_not_the_lws_alone():
    # LWS v0.8.0 counts a group ready once its pods exist: the pods say whether they are Ready.
    not_ready = obs(lws(1, 1, 1), pods=group(0, ready=False))
    assert by_type(not_ready) == {"Ready": ("False", "GroupsNotReady"), "Progressing": ("True", "WaitingForGroups"),
                                  "Degraded": ("False", "AsExpected")}
    st = compute_status(not_ready, None, T0)
    assert st["readyReplicas"] == 0 and st["replicas"] == 1
    ready = condition(st, "Ready")
    assert ready["message"].startswith("0/1 groups ready") and "kubectl -n ns get pods -l sglangfleet.dev/deployment=x" in ready["message"]
    assert by_type(obs(lws(1, 1, 1), pods=[]))["Ready"] == ("False", "GroupsNotReady")
    assert by_type(obs(lws(2, 2, 2), pods=ready_pods(1)))["Ready"] == ("False", "GroupsNotReady")
    assert by_type(obs(lws(1, 1, 1), pods=[pod(0, 0, terminating=True)]))["Ready"] == ("False", "GroupsNotReady")


def test_ready_groups_never_exceed_what_the_lws_reports_as_existing():
    # Pods Ready before the LWS status caught up (or after it under-reports): capped by status.replicas.
    st = compute_status(obs(lws(3, 2, 0), pods=ready_pods(3)), None, T0)
    assert st["readyReplicas"] == 2 and st["replicas"] == 2
    assert condition(st, "Ready")["status"] == "False"


def test_multi_pod_groups_need_their_workers():
    two = {**lws(2, 2, 2), "spec": {"replicas": 2, "leaderWorkerTemplate": {"size": 2}}}
    assert compute_status(obs(two, pods=ready_pods(2, 2)), None, T0)["readyReplicas"] == 2
    st = compute_status(obs(two, pods=ready_pods(2)), None, T0)  # leaders only
    assert st["readyReplicas"] == 0 and condition(st, "Ready")["reason"] == "GroupsNotReady"
