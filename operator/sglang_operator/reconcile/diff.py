"""Is a live object still what we applied? Pure comparison, no API calls.

We send nothing when nothing changed (no request at all, not just a no-op apply), so the decision
must be made locally, from two facts:

- the fingerprint annotation: a hash of the object we last applied. It changes when our rendering
  changes, including when we stop setting a field (server-side apply then removes it);
- containment: every field we set is still present with our value. The API server adds defaults
  and other managers add fields; those are not ours and do not count as drift, except inside
  atomic maps such as a Service selector, which must match exactly.
"""
from __future__ import annotations

import copy
import hashlib
import json
from decimal import InvalidOperation
from typing import Any, Iterable, Mapping

from kubernetes.utils.quantity import parse_quantity

FINGERPRINT = "sglangfleet.dev/applied-fingerprint"


def fingerprint(obj: Mapping[str, Any]) -> str:
    """A stable hash of the object as we would apply it (canonical JSON, without the hash itself)."""
    body = copy.deepcopy(dict(obj))
    annotations = body.get("metadata", {}).get("annotations", {})
    annotations.pop(FINGERPRINT, None)
    if not annotations:
        body.get("metadata", {}).pop("annotations", None)
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:20]


def with_fingerprint(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {**meta.get("annotations", {}), FINGERPRINT: fingerprint(obj)}
    return out


def without_fields(obj: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A copy of `obj` minus dotted paths (e.g. "spec.replicas"): fields we leave to another manager
    (the autoscaler). With server-side apply, a field we do not send is a field we do not own."""
    out = copy.deepcopy(dict(obj))
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def _same_scalar(want: Any, have: Any) -> bool:
    if want == have and type(want) is type(have):
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    # Built-in types normalise quantities ("1000m" -> "1", 2 -> "2"); compare their values.
    if isinstance(want, (str, int, float)) and isinstance(have, (str, int, float)):
        try:
            return parse_quantity(want) == parse_quantity(have)
        except (ValueError, InvalidOperation, TypeError):
            return False
    return False


def contains(live: Any, desired: Any) -> bool:
    """True when every field of `desired` is in `live` with the same value. Lists must match
    element by element (same length): a list is owned as a whole or keyed, and either way an extra or
    missing element is drift."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(
            contains(lv, dv) for lv, dv in zip(live, desired))
    return _same_scalar(desired, live)


def _differences(live: Any, desired: Any, prefix: str) -> list[str]:
    if contains(live, desired):
        return []
    if isinstance(desired, dict) and isinstance(live, dict):
        out: list[str] = []
        for k, v in desired.items():
            path = f"{prefix}.{k}" if prefix else k
            out += _differences(live[k], v, path) if k in live else [path]
        return out
    return [prefix or "."]


def drifted_fields(live: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """Paths where `live` differs from `desired` (for events and logs: names only, never values)."""
    out = _differences(live, desired, "")
    for path in ATOMIC.get(desired.get("kind", ""), ()):
        if _at(live, path) != _at(desired, path) and not any(p == path or p.startswith(path + ".") for p in out):
            out.append(path)
    return out


# Maps the API server treats as one value (+mapType=atomic / +structType=atomic): a key someone adds
# there changes what the field means (a selector matching fewer pods), so they must match exactly.
ATOMIC = {
    "Service": ("spec.selector",),
    "PodDisruptionBudget": ("spec.selector",),
}


def _at(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def in_sync(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """`desired` carries its fingerprint annotation (see with_fingerprint)."""
    if live is None:
        return False
    want = desired["metadata"]["annotations"][FINGERPRINT]
    have = (live.get("metadata", {}).get("annotations") or {}).get(FINGERPRINT)
    atomic_ok = all(_at(live, p) == _at(desired, p) for p in ATOMIC.get(desired.get("kind", ""), ()))
    return have == want and atomic_ok and contains(live, desired)


__all__ = ["FINGERPRINT", "contains", "drifted_fields", "fingerprint", "in_sync", "with_fingerprint",
           "without_fields"]
