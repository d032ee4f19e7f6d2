"""ownerReferences: rendering stays owner-agnostic; the operator adds its owner with `with_owner`."""
from __future__ import annotations

import copy
from typing import Any, Mapping

from ..api.names import API_VERSION, KIND


def owner_reference(owner_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A controller reference to an SGLangDeployment, from its metadata (needs name and uid)."""
    name, uid = owner_metadata.get("name"), owner_metadata.get("uid")
    if not name or not uid:
        raise ValueError("owner metadata needs name and uid (read them from the stored SGLangDeployment)")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def with_owner(obj: Mapping[str, Any], owner_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `obj` owned by the SGLangDeployment, so deleting it garbage-collects `obj`."""
    out = copy.deepcopy(dict(obj))
    out.setdefault("metadata", {})["ownerReferences"] = [owner_reference(owner_metadata)]
    return out
