"""readiness.ready_groups: a group is ready when all its pods exist, none is terminating and every
one is Ready; only groups the LWS still wants count; the template revision does not matter."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sglang_operator.api.lws import LWS_GROUP_INDEX_LABEL
from sglang_operator.reconcile.readiness import ready_groups

from .lws_pods import group, pod, ready_pods


def lws(replicas: int | None = 1, size: int | None = None) -> dict:
    spec: dict = {} if replicas is None else {"replicas": replicas}
    if size is not None:
        spec["leaderWorkerTemplate"] = {"size": size}
    return {"spec": spec}


def test_one_pod_groups_by_default():
    assert ready_groups(lws(2), ready_pods(2)) == 2
    assert ready_groups(lws(None), ready_pods(1)) == 1  # replicas default to 1
    assert ready_groups(lws(2), []) == 0


def test_a_group_needs_every_pod_present_live_and_ready():
    assert ready_groups(lws(1, 3), group(0, 3)) == 1
    assert ready_groups(lws(1, 3), group(0, 3)[:2]) == 0  # a worker is missing
    assert ready_groups(lws(1, 3), group(0, 2) + [pod(0, 2, ready=False)]) == 0
    assert ready_groups(lws(1, 3), group(0, 2) + [pod(0, 2, terminating=True)]) == 0
    no_conditions = {**pod(0, 0), "status": {}}
    assert ready_groups(lws(1), [no_conditions]) == 0


def test_what_lws_v080_reports_as_ready_is_not_until_the_pods_are():
    created = [{**p, "status": {"phase": "Pending"}} for p in group(0, 2)]
    assert ready_groups({**lws(1, 2), "status": {"replicas": 1, "readyReplicas": 1}}, created) == 0


def test_leftovers_of_a_scale_down_do_not_count():
    assert ready_groups(lws(2), ready_pods(4)) == 2
    assert ready_groups(lws(0), ready_pods(1)) == 0


def test_old_revision_groups_still_serve_during_a_rolling_update():
    old, new = group(0, 2, revision="old"), group(1, 2, revision="new")
    assert ready_groups(lws(2, 2), old + new) == 2
    # Group 1 being replaced: its old pods terminate while the new leader is not Ready yet.
    replacing = [pod(1, 0, revision="old", terminating=True), pod(1, 0, revision="new", ready=False)]
    assert ready_groups(lws(2, 2), old + replacing + [pod(1, 1, revision="old")]) == 1


def test_pods_without_usable_indices_are_ignored():
    bad = pod("x", 0)
    unlabeled = {"metadata": {"name": "p"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    no_group = pod(0, 0)
    del no_group["metadata"]["labels"][LWS_GROUP_INDEX_LABEL]
    assert ready_groups(lws(1), [bad, unlabeled, no_group]) == 0
    assert ready_groups(lws(1), [bad, unlabeled, no_group, pod(0, 0)]) == 1


STATES = ("ready", "absent", "missing-worker", "not-ready", "terminating", "extra-ready-pod")


@st.composite
def worlds(draw):
    replicas, size = draw(st.integers(0, 4)), draw(st.integers(1, 3))
    states = draw(st.lists(st.sampled_from(STATES), min_size=0, max_size=6))
    pods = []
    for g, state in enumerate(states):
        revision = draw(st.sampled_from(["old", "new"]))
        members = group(g, size, revision=revision)
        if state == "absent":
            members = []
        elif state == "missing-worker":
            members.pop(draw(st.integers(0, size - 1)))
        elif state in ("not-ready", "terminating"):
            i = draw(st.integers(0, size - 1))
            members[i] = pod(g, i, revision=revision, **({"ready": False} if state == "not-ready" else
                                                          {"terminating": True}))
        elif state == "extra-ready-pod":
            members.append(pod(g, size, revision=revision))  # beyond the size: harmless when Ready
        pods += members
    pods += draw(st.lists(st.sampled_from([pod("a", 0), pod(0, "b"), {"metadata": {}}]), max_size=2))
    expected = sum(1 for g, s in enumerate(states) if g < replicas and s in ("ready", "extra-ready-pod"))
    return lws(replicas, size), draw(st.permutations(pods)), expected


@given(worlds())
def test_ready_groups_counts_exactly_the_complete_live_ready_wanted_groups(world):
    lws_obj, pods, expected = world
    assert ready_groups(lws_obj, pods) == expected
    assert 0 <= expected <= lws_obj["spec"]["replicas"]
