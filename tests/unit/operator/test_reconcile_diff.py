"""diff: when is a live child still what we applied (no write), and when is it drift?"""
from __future__ import annotations

import copy

import pytest
from hypothesis import given, strategies as st

from sglang_operator.reconcile.plan import CREATED, REPAIRED, UPDATED, desired_children, plan
from sglang_operator.reconcile.diff import (FINGERPRINT, contains, drifted_fields, fingerprint, in_sync,
                                            with_fingerprint, without_fields)
from sglang_operator.render import render_all

from .cases import EXAMPLES, load_example

OWNER = {"name": "x", "uid": "u-1"}


def desired_for(example) -> list[dict]:
    m = load_example(example)
    return desired_children(render_all(m["metadata"]["name"], "ns", m["spec"]), {**OWNER, "name": m["metadata"]["name"]})


def as_server_would_store(obj: dict) -> dict:
    """What the API server returns after apply: defaults, status and bookkeeping added."""
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="child-uid", resourceVersion="42", generation=1, creationTimestamp="2026-01-01T00:00:00Z",
                            managedFields=[{"manager": "sglang-operator", "operation": "Apply"}])
    live["spec"]["someServerDefault"] = "x"
    live["status"] = {"replicas": 0}
    return live


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_applied_children_are_in_sync_with_server_additions(example):
    for obj in desired_for(example):
        assert plan(obj, as_server_would_store(obj)) is None, obj["kind"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_child_is_owned_and_fingerprinted(example):
    for obj in desired_for(example):
        refs = obj["metadata"]["ownerReferences"]
        assert [(r["kind"], r["uid"], r["controller"]) for r in refs] == [("SGLangDeployment", "u-1", True)]
        assert obj["metadata"]["annotations"][FINGERPRINT] == fingerprint(obj)


def test_missing_child_is_created():
    obj = with_fingerprint({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}})
    assert plan(obj, None) == CREATED


def test_hand_edit_is_repair_and_spec_change_is_update():
    svc = with_fingerprint({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                            "spec": {"selector": {"app": "a", "role": "leader"}, "ports": [{"port": 80}]}})
    live = as_server_would_store(svc)
    edited = copy.deepcopy(live)
    edited["spec"]["selector"]["role"] = "worker"
    assert plan(svc, edited) == REPAIRED
    assert drifted_fields(edited, svc) == ["spec.selector.role"]
    new = with_fingerprint({**svc, "spec": {**svc["spec"], "ports": [{"port": 81}]}})
    assert plan(new, live) == UPDATED


def test_a_key_added_to_an_atomic_selector_is_drift():
    svc = with_fingerprint({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                            "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}})
    live = as_server_would_store(svc)
    live["metadata"]["labels"] = {"added-by": "someone"}  # extra keys elsewhere are not drift
    assert plan(svc, live) is None
    live["spec"]["selector"]["role"] = "x"  # but they narrow a selector
    assert plan(svc, live) == REPAIRED
    assert drifted_fields(live, svc) == ["spec.selector"]


def test_removed_field_changes_the_fingerprint_so_apply_can_drop_it():
    # Containment alone would call this in sync (the live object has an extra annotation we no
    # longer want); the fingerprint catches it and server-side apply then removes the field.
    with_ann = with_fingerprint({"kind": "Service", "metadata": {"name": "s", "annotations": {"a": "1"}}})
    without = with_fingerprint({"kind": "Service", "metadata": {"name": "s"}})
    live = as_server_would_store({**with_ann, "spec": {}})
    assert contains(live, {k: v for k, v in without.items() if k != "metadata"})
    assert plan(without, live) == UPDATED


def test_fingerprint_ignores_its_own_annotation_and_key_order():
    a = {"kind": "K", "metadata": {"name": "n"}, "spec": {"a": 1, "b": [1, 2]}}
    b = {"spec": {"b": [1, 2], "a": 1}, "metadata": {"name": "n"}, "kind": "K"}
    assert fingerprint(a) == fingerprint(b) == fingerprint(with_fingerprint(a))
    assert fingerprint(a) != fingerprint({**a, "spec": {"a": 1, "b": [2, 1]}})


def test_quantities_are_compared_by_value():
    assert contains({"cpu": "2", "memory": "4Gi", "m": "500m"}, {"cpu": 2, "memory": "4Gi", "m": "0.5"})
    assert not contains({"cpu": "3"}, {"cpu": 2})
    assert not contains({"name": "http"}, {"name": "https"})
    assert not contains({"flag": 1}, {"flag": True})


def test_list_length_matters():
    assert not contains({"args": ["a", "b", "c"]}, {"args": ["a", "b"]})
    assert not contains({"args": ["a"]}, {"args": ["a", "b"]})
    assert contains({"ports": [{"port": 1, "protocol": "TCP"}]}, {"ports": [{"port": 1}]})


def test_without_fields_leaves_a_field_to_another_manager():
    lws = {"kind": "LeaderWorkerSet", "spec": {"replicas": 3, "leaderWorkerTemplate": {"size": 2}}}
    out = without_fields(lws, ["spec.replicas", "spec.nothing.here"])
    assert out == {"kind": "LeaderWorkerSet", "spec": {"leaderWorkerTemplate": {"size": 2}}}
    assert lws["spec"]["replicas"] == 3  # input untouched
    owned = desired_children([{**lws, "apiVersion": "x/v1", "metadata": {"name": "n"}}], OWNER,
                             omit={"LeaderWorkerSet": ["spec.replicas"]})[0]
    assert "replicas" not in owned["spec"]
    live = as_server_would_store(owned)
    live["spec"]["replicas"] = 7  # the autoscaler's choice is not drift
    assert in_sync(live, owned)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text("abc", max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("xyz", min_size=1, max_size=2), inner, max_size=3),
    max_leaves=12,
)


@given(json_values)
def test_everything_contains_itself(value):
    assert contains(value, value)
    if isinstance(value, dict):
        assert drifted_fields(value, value) == []


@given(st.dictionaries(st.text("ab", min_size=1, max_size=2), json_values, max_size=4),
       st.dictionaries(st.text("cd", min_size=1, max_size=2), json_values, max_size=3))
def test_extra_fields_on_the_server_are_not_drift(desired, extra):
    assert contains({**desired, **extra}, desired)
