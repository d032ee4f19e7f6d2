"""The kopf wiring's own logic: which children belong to an SGLangDeployment."""
from __future__ import annotations

from sglang_operator.handlers import owner_name


def test_owner_name_needs_a_controller_reference_to_an_sgld():
    ref = {"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment", "name": "a", "controller": True}
    assert owner_name({"ownerReferences": [ref]}) == "a"
    assert owner_name({"ownerReferences": [{**ref, "controller": False}]}) is None
    assert owner_name({"ownerReferences": [{**ref, "apiVersion": "other/v1"}]}) is None
    assert owner_name({}) is None

