"""change_events: one Event per real change; warnings on Degraded transitions only; no values in messages."""
from __future__ import annotations

from sglang_operator.kube.client import Ref
from sglang_operator.kube.events import WARNING
from sglang_operator.reconcile.change_events import for_changes, for_degraded
from sglang_operator.reconcile.plan import CREATED, REPAIRED, UPDATED, Change

LWS = Ref("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "ns", "x")
SVC = Ref("v1", "Service", "ns", "x-api")


def test_created_then_recreated():
    changes = [Change(LWS, CREATED), Change(SVC, CREATED)]
    assert [(e.reason, e.message) for e in for_changes(changes, reconciled_before=False)] == [
        ("Created", "Created LeaderWorkerSet x, Service x-api")]
    assert for_changes(changes[1:], reconciled_before=True)[0].reason == "Recreated"


def test_update_with_scale_and_repair():
    changes = [Change(LWS, UPDATED, replicas_before=1, replicas_after=3), Change(SVC, REPAIRED, ("spec.selector.role",))]
    got = [(e.reason, e.message) for e in for_changes(changes, reconciled_before=True)]
    assert got == [("Updated", "Applied the new spec to LeaderWorkerSet x"),
                   ("Scaled", "Scaled LeaderWorkerSet x from 1 to 3 groups"),
                   ("DriftRepaired", "Reverted manual changes to Service x-api (spec.selector.role)")]


def test_nothing_changed_no_events():
    assert for_changes([], reconciled_before=True) == []


def test_degraded_warns_once_per_reason_and_says_when_it_recovers():
    ok = {"type": "Degraded", "status": "False", "reason": "AsExpected"}
    bad = {"type": "Degraded", "status": "True", "reason": "LeaderWorkerSetMissing", "message": "install it"}
    [e] = for_degraded(ok, bad)
    assert (e.type, e.reason, e.message) == (WARNING, "LeaderWorkerSetMissing", "install it")
    assert for_degraded(bad, bad) == []  # retries do not flood
    assert for_degraded(bad, {**bad, "reason": "InvalidSpec"})[0].reason == "InvalidSpec"
    assert for_degraded(bad, ok)[0].reason == "Recovered"
    assert for_degraded(None, ok) == []
