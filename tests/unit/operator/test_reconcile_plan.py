"""plan: the refusal to take over someone else's object."""
from __future__ import annotations

from sglang_operator.reconcile.plan import foreign_controller


def test_foreign_controller_is_detected_and_ours_or_none_is_not():
    ours = {"metadata": {"ownerReferences": [{"kind": "SGLangDeployment", "uid": "u", "controller": True}]}}
    theirs = {"metadata": {"ownerReferences": [{"kind": "Deployment", "name": "d", "uid": "v", "controller": True}]}}
    non_controller = {"metadata": {"ownerReferences": [{"kind": "X", "uid": "v"}]}}
    assert foreign_controller(ours, "u") is None
    assert foreign_controller({"metadata": {}}, "u") is None
    assert foreign_controller(non_controller, "u") is None
    assert foreign_controller(theirs, "u")["name"] == "d"

