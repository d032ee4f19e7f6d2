"""metav1.Condition lists and API timestamps, the same for every writer of a status."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping


def now() -> datetime:
    return datetime.now(timezone.utc)


def timestamp(t: datetime) -> str:
    """metav1.Time: RFC 3339 in UTC, whole seconds."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(t: datetime) -> str:
    """metav1.MicroTime (a Lease's acquireTime and renewTime)."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def condition(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    """A condition without its timestamps (with_transition_times adds them)."""
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def find(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == type_), None)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """A pod that is not terminating and whose Ready condition is True (the kubelet sets it once
    every container passes its readiness probe; the Service sends traffic to such pods only)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def of_types(status: Mapping[str, Any] | None, types: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """The stored conditions of the given types: the ones one writer owns."""
    return [c for c in (status or {}).get("conditions") or [] if c.get("type") in types]


def with_transition_times(new: list[dict[str, Any]], previous: list[Mapping[str, Any]], t: datetime,
                          generation: int | None) -> list[dict[str, Any]]:
    """metav1.Condition semantics: lastTransitionTime moves only when `status` flips."""
    before = {c.get("type"): c for c in previous or []}
    stamp = timestamp(t)
    out = []
    for c in new:
        old = before.get(c["type"])
        kept = old.get("lastTransitionTime") if old and old.get("status") == c["status"] else None
        full = {**c, "lastTransitionTime": kept or stamp}
        if generation is not None:
            full["observedGeneration"] = generation
        out.append(full)
    return out


def groups(n: int) -> str:
    """How messages count LeaderWorkerSet groups: "1 group", "3 groups"."""
    return f"{n} group" if n == 1 else f"{n} groups"
