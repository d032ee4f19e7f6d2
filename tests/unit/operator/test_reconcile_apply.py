"""apply: ownership rules and the refusal to take over someone else's object."""
from __future__ import annotations

from sglang_operator.reconcile.apply import foreign_controller
from sglang_operator.reconcile.handlers import backoff, owner_name


def test_foreign_controller_is_detected_and_ours_or_none_is_not():
    ours = {"metadata": {"ownerReferences": [{"kind": "SGLangDeployment", "uid": "u", "controller": True}]}}
    theirs = {"metadata": {"ownerReferences": [{"kind": "Deployment", "name": "d", "uid": "v", "controller": True}]}}
    non_controller = {"metadata": {"ownerReferences": [{"kind": "X", "uid": "v"}]}}
    assert foreign_controller(ours, "u") is None
    assert foreign_controller({"metadata": {}}, "u") is None
    assert foreign_controller(non_controller, "u") is None
    assert foreign_controller(theirs, "u")["name"] == "d"


def test_owner_name_needs_a_controller_reference_to_an_sgld():
    ref = {"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment", "name": "a", "controller": True}
    assert owner_name({"ownerReferences": [ref]}) == "a"
    assert owner_name({"ownerReferences": [{**ref, "controller": False}]}) is None
    assert owner_name({"ownerReferences": [{**ref, "apiVersion": "other/v1"}]}) is None
    assert owner_name({}) is None


def test_backoff_grows_and_is_capped():
    delays = [backoff(r) for r in range(10)]
    assert delays[:4] == [1, 2, 4, 8]
    assert max(delays) == 60 and delays == sorted(delays)
    assert backoff(10_000) == 60
