"""SGLangDeployment status as a pure function of what we observed.

Inputs: the parsed spec (None when the renderer rejected it), the live LeaderWorkerSet (None when
absent), the problem that stopped the last reconcile (if any) and the previous status (to keep
lastTransitionTime stable). Output: the status fields we own. The reconciler writes them only when
they differ from what is stored, so an unchanged world costs no write.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from ..render.labels import DEPLOYMENT_LABEL, leader_selector, selector_string

READY, PROGRESSING, DEGRADED = "Ready", "Progressing", "Degraded"
OUR_CONDITIONS = (READY, PROGRESSING, DEGRADED)
# Status fields this operator writes; others (the autoscaler's, kopf's bookkeeping) are left alone.
OUR_FIELDS = ("observedGeneration", "replicas", "readyReplicas", "desiredReplicas", "selector", "endpoint",
              "conditions")


@dataclass(frozen=True)
class Problem:
    """Why the last reconcile could not finish. `reason` is CamelCase, `message` says what to do."""

    reason: str
    message: str
    retry: bool = True  # transient (retry with backoff) or needs a spec change


@dataclass(frozen=True)
class Observed:
    name: str
    namespace: str
    generation: int | None
    desired_replicas: int | None  # groups we asked for (None: spec rejected before we knew)
    endpoint: str | None
    lws: Mapping[str, Any] | None  # live LeaderWorkerSet
    problem: Problem | None = None


def _cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def _groups(n: int) -> str:
    return f"{n} group" if n == 1 else f"{n} groups"


def _lws_counts(lws: Mapping[str, Any]) -> tuple[int, int, int, int]:
    spec, st = lws.get("spec") or {}, lws.get("status") or {}
    return (int(spec.get("replicas", 1)), int(st.get("replicas") or 0), int(st.get("readyReplicas") or 0),
            int(st.get("updatedReplicas") or 0))


def conditions(o: Observed) -> list[dict[str, Any]]:
    """Ready, Progressing, Degraded (without timestamps)."""
    pods = f"kubectl -n {o.namespace} get pods -l {selector_string({DEPLOYMENT_LABEL: o.name})}"
    p = o.problem
    if o.lws is None:
        why = p.reason if p else "Creating"
        msg = p.message if p else "Waiting for the LeaderWorkerSet to be created."
        ready = _cond(READY, False, why, msg)
        progressing = _cond(PROGRESSING, p is None, why, msg)
    else:
        want, have, ready_n, updated = _lws_counts(o.lws)
        if want == 0:
            ready = _cond(READY, False, "ScaledToZero", "No groups are wanted (0 replicas); nothing serves.")
        elif ready_n >= want:
            ready = _cond(READY, True, "AllGroupsReady", f"{ready_n}/{want} groups ready; serving at {o.endpoint}.")
        else:
            ready = _cond(READY, False, "GroupsNotReady",
                          f"{ready_n}/{want} groups ready. A group is ready when all its pods run and the leader "
                          f"passes its readiness probe (weights can take minutes to load); inspect: {pods}")
        if p is not None and not p.retry:
            progressing = _cond(PROGRESSING, False, p.reason, "Rollout stopped: " + p.message)
        elif updated < min(have, want):
            progressing = _cond(PROGRESSING, True, "RollingUpdate",
                                f"{updated}/{want} groups run the current template.")
        elif have < want:
            progressing = _cond(PROGRESSING, True, "ScalingUp", f"{have} -> {_groups(want)}.")
        elif have > want:
            progressing = _cond(PROGRESSING, True, "ScalingDown", f"{have} -> {_groups(want)}.")
        elif ready_n < want:
            progressing = _cond(PROGRESSING, True, "WaitingForGroups",
                                f"{ready_n}/{want} groups ready; waiting for the rest.")
        else:
            progressing = _cond(PROGRESSING, False, "Complete", f"All {_groups(want)} updated and ready.")
    degraded = _cond(DEGRADED, True, p.reason, p.message) if p else _cond(DEGRADED, False, "AsExpected", "")
    return [ready, progressing, degraded]


def with_transition_times(new: list[dict[str, Any]], previous: list[Mapping[str, Any]], now: datetime,
                          generation: int | None) -> list[dict[str, Any]]:
    """metav1.Condition semantics: lastTransitionTime moves only when `status` flips."""
    before = {c.get("type"): c for c in previous or []}
    stamp = now.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for c in new:
        old = before.get(c["type"])
        kept = old.get("lastTransitionTime") if old and old.get("status") == c["status"] else None
        full = {**c, "lastTransitionTime": kept or stamp}
        if generation is not None:
            full["observedGeneration"] = generation
        out.append(full)
    return out


def compute_status(o: Observed, previous: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The status fields we own (see OUR_FIELDS)."""
    previous = previous or {}
    st: dict[str, Any] = {"selector": selector_string(leader_selector(o.name))}
    if o.generation is not None:
        st["observedGeneration"] = o.generation
    if o.lws is not None:
        _, have, ready_n, _ = _lws_counts(o.lws)
        st.update(replicas=have, readyReplicas=ready_n)
    if o.desired_replicas is not None:
        st["desiredReplicas"] = o.desired_replicas
    endpoint = o.endpoint or previous.get("endpoint")  # a rejected spec keeps serving at the old address
    if endpoint:
        st["endpoint"] = endpoint
    st["conditions"] = with_transition_times(conditions(o), previous.get("conditions") or [], now, o.generation)
    return st


def ours(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a stored status that we own, in compute_status's shape."""
    status = status or {}
    out = {k: status[k] for k in OUR_FIELDS if k in status and k != "conditions"}
    out["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") in OUR_CONDITIONS]
    return out


def changed(stored: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    mine = ours(stored)
    return {**mine, "conditions": _by_type(mine["conditions"])} != {**new, "conditions": _by_type(new["conditions"])}


def _by_type(conds: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: {k: v for k, v in c.items() if v not in (None, "")} for c in conds}


def condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == type_), None)


def now() -> datetime:
    return datetime.now(timezone.utc)
