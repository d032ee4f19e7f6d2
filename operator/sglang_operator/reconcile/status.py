"""SGLangDeployment status as a pure function of what we observed.

Inputs: what the pass observed (the groups it asked for, the endpoint, the live LeaderWorkerSet or
None and its pods, the problem that stopped it, if any) and the previous status (to keep
lastTransitionTime stable). Output: the status fields we own. The reconciler writes them only when
they differ from what is stored, so an unchanged world costs no write.

Ready groups are counted from the pods (readiness.py), not taken from the LWS's status.readyReplicas,
which LWS v0.8.0 reports before the pods are Ready.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from ..api.lws import spec_replicas
from ..kube.conditions import condition, find, groups, of_types, with_transition_times
from ..render import status_selector
from ..render.labels import deployment_selector, selector_string
from .model_download import MODEL_DOWNLOADING, download_degraded, downloading_condition, observe_downloads
from .readiness import ready_groups

READY, PROGRESSING, DEGRADED, ROUTER_READY = "Ready", "Progressing", "Degraded", "RouterReady"
RECONCILER_CONDITIONS = (READY, PROGRESSING, DEGRADED, ROUTER_READY, MODEL_DOWNLOADING)
# The status fields the reconciler writes, each with no other writer: the autoscaler writes its own
# (autoscale/report.py), kopf its bookkeeping (status.kopf).
RECONCILER_FIELDS = ("observedGeneration", "replicas", "readyReplicas", "desiredReplicas", "selector", "endpoint",
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
    desired_replicas: int | None  # the LWS's spec.replicas: dp, or the autoscaler's choice (None: unknown)
    endpoint: str | None
    lws: Mapping[str, Any] | None  # live LeaderWorkerSet
    problem: Problem | None = None
    pods: Sequence[Mapping[str, Any]] = ()  # the live LWS's pods (its name label)
    router: "RouterObserved | RouterLeft | RouterKept | None" = None  # None: spec.router is off (and gone)


@dataclass(frozen=True)
class RouterObserved:
    deployment: Mapping[str, Any] | None  # the live router Deployment (None: absent or not ours)
    workers: int  # leaders listed in its worker manifest
    url: str | None  # None: the spec could not be read this pass


@dataclass(frozen=True)
class RouterLeft:
    """spec.router is off but router objects could not be deleted (the pass retries)."""

    message: str


@dataclass(frozen=True)
class RouterKept:
    """The pass could not observe the router (the pods are unknown): the stored condition stays."""

    condition: Mapping[str, Any]


def router_condition(r: RouterObserved | RouterLeft | RouterKept) -> dict[str, Any]:
    """RouterReady: a router pod is ready and it has workers to send to."""
    if isinstance(r, RouterKept):
        return condition(ROUTER_READY, r.condition.get("status") == "True", str(r.condition.get("reason")),
                         str(r.condition.get("message") or ""))
    if isinstance(r, RouterLeft):
        return condition(ROUTER_READY, False, "Removing", r.message)
    if r.deployment is None:
        return condition(ROUTER_READY, False, "Creating", "Waiting for the router Deployment to be created.")
    want = int((r.deployment.get("spec") or {}).get("replicas") or 0)
    ready = int((r.deployment.get("status") or {}).get("readyReplicas") or 0)
    if want == 0:
        return condition(ROUTER_READY, False, "ScaledToZero", "spec.router.replicas is 0; nothing routes.")
    if r.workers == 0:
        return condition(ROUTER_READY, False, "NoWorkers",
                         "No group leader is Ready, so the router has no worker to send to.")
    if ready == 0:
        return condition(ROUTER_READY, False, "RouterPodsNotReady",
                         f"0/{want} router pods ready ({r.workers} workers listed); inspect the "
                         "router pods' logs and Events.")
    return condition(ROUTER_READY, True, "Routing", f"{ready}/{want} router pods ready, {r.workers} workers"
                                                    + (f"; serving at {r.url}." if r.url else "."))


def _counts(lws: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> tuple[int, int, int, int]:
    """(wanted, existing, ready, updated) groups. Ready comes from the pods, capped by the groups the
    LWS reports as existing, so readyReplicas never exceeds replicas."""
    st = lws.get("status") or {}
    have = int(st.get("replicas") or 0)
    return spec_replicas(lws), have, min(ready_groups(lws, pods), have), int(st.get("updatedReplicas") or 0)


def conditions(o: Observed, previous_degraded: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Ready, Progressing, Degraded, RouterReady and ModelDownloading where they apply (without
    timestamps). `previous_degraded` keeps a failed model download's reason while its pods retry."""
    pods = f"kubectl -n {o.namespace} get pods -l {selector_string(deployment_selector(o.name))}"
    p = o.problem
    if o.lws is None:
        why = p.reason if p else "Creating"
        msg = p.message if p else "Waiting for the LeaderWorkerSet to be created."
        ready = condition(READY, False, why, msg)
        progressing = condition(PROGRESSING, p is None, why, msg)
    else:
        want, have, ready_n, updated = _counts(o.lws, o.pods)
        if want == 0:
            ready = condition(READY, False, "ScaledToZero", "No groups are wanted (0 replicas); nothing serves.")
        elif ready_n >= want:
            ready = condition(READY, True, "AllGroupsReady", f"{ready_n}/{want} groups ready; serving at {o.endpoint}.")
        else:
            ready = condition(READY, False, "GroupsNotReady",
                          f"{ready_n}/{want} groups ready. A group is ready when all its pods exist and are Ready "
                          f"(each passes its readiness probe; weights can take minutes to load); inspect: {pods}")
        if p is not None and not p.retry:
            progressing = condition(PROGRESSING, False, p.reason, "Rollout stopped: " + p.message)
        elif updated < min(have, want):
            progressing = condition(PROGRESSING, True, "RollingUpdate",
                                f"{updated}/{want} groups run the current template.")
        elif have < want:
            progressing = condition(PROGRESSING, True, "ScalingUp", f"{have} -> {groups(want)}.")
        elif have > want:
            progressing = condition(PROGRESSING, True, "ScalingDown", f"{have} -> {groups(want)}.")
        elif ready_n < want:
            progressing = condition(PROGRESSING, True, "WaitingForGroups",
                                f"{ready_n}/{want} groups ready; waiting for the rest.")
        else:
            progressing = condition(PROGRESSING, False, "Complete", f"All {groups(want)} updated and ready.")
    downloads = observe_downloads(o.pods)
    why = (p.reason, p.message) if p else download_degraded(downloads, o.namespace, previous_degraded)
    degraded = condition(DEGRADED, True, *why) if why else condition(DEGRADED, False, "AsExpected", "")
    out = [ready, progressing, degraded]
    if o.router is not None:
        out.append(router_condition(o.router))
    if downloads is not None:
        out.append(downloading_condition(downloads, o.namespace))
    return out


def compute_status(o: Observed, previous: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The status fields we own (see RECONCILER_FIELDS)."""
    previous = previous or {}
    st: dict[str, Any] = {"selector": status_selector(o.name)}
    if o.generation is not None:
        st["observedGeneration"] = o.generation
    if o.lws is not None:
        _, have, ready_n, _ = _counts(o.lws, o.pods)
        st.update(replicas=have, readyReplicas=ready_n)
    if o.desired_replicas is not None:
        st["desiredReplicas"] = o.desired_replicas
    endpoint = o.endpoint or previous.get("endpoint")  # a rejected spec keeps serving at the old address
    if endpoint:
        st["endpoint"] = endpoint
    st["conditions"] = with_transition_times(conditions(o, find(previous, DEGRADED)), previous.get("conditions") or [],
                                             now, o.generation)
    return st


def ours(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a stored status that we own, in compute_status's shape."""
    status = status or {}
    out = {k: status[k] for k in RECONCILER_FIELDS if k in status and k != "conditions"}
    out["conditions"] = of_types(status, RECONCILER_CONDITIONS)
    return out


def changed(stored: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    mine = ours(stored)
    return {**mine, "conditions": _by_type(mine["conditions"])} != {**new, "conditions": _by_type(new["conditions"])}


def _by_type(conds: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: {k: v for k, v in c.items() if v not in (None, "")} for c in conds}

