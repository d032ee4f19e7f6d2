"""Idempotent apply of the rendered children.

Why server-side apply (SSA) with one field manager ("sglang-operator") and force:
- The API server merges per field and records who owns what. Fields other actors set (defaults,
  the LWS controller, a human's extra label) stay theirs; fields we set are put back when edited
  (that is the drift repair), and a field we stop sending is removed because we owned it.
- Leaving a field out is how we hand it to someone else: with autoscaling on, the autoscaler owns
  LWS `spec.replicas` and we simply do not send it (the `omit` of handoff.py), instead of racing
  it with patches.
- Creation and update are the same request, so an interrupted reconcile (operator killed between
  two writes) cannot duplicate anything on retry: names are fixed and apply is idempotent.

SSA alone is already a no-op on the server when nothing changed (resourceVersion stays), but it is
still a request. We skip even that: `plan` compares the live object with what we would send, so
steady state costs reads only (and those only on events or the resync timer).

An object that no pass has completed for yet (`new=True`: its status has no observedGeneration)
has, but for an interrupted first pass, no children: they are applied without reading them first
(the API server's 201 says "created"), which saves a read per child when a thousand objects
arrive at once. An apply the API server refuses (a child another controller owns: two controller
references) falls back to the read path, which names the conflict. What an interrupted first pass
left is applied over and logged, without a change record: its state before is unknown.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..kube.client import Kube, Ref
from ..kube.errors import api_error_summary, transient
from .diff import drifted_fields
from .plan import CREATED, REPAIRED, Change, foreign_controller, lws_replicas, plan

log = logging.getLogger("sglang_operator.reconcile")


class ChildConflict(Exception):
    """An object with our child's name is controlled by something else; we do not take it over."""


class ApplyRejected(Exception):
    """The API server refused a child for a reason retrying alone will not fix (400, 403, 422, ...)."""

    def __init__(self, ref: Ref, err: ApiException):
        super().__init__(f"the API server rejected {ref}: {api_error_summary(err)}")
        self.ref, self.status = ref, err.status


@dataclass
class Result:
    changes: list[Change] = field(default_factory=list)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> object after apply


def apply_children(kube: Kube, desired: list[dict[str, Any]], owner_uid: str, *, new: bool = False) -> Result:
    """Apply in order (the LeaderWorkerSet first: if its CRD is missing nothing else is written)."""
    result = Result()
    for obj in desired:
        ref = Ref.of(obj)
        if new and _applied_unread(kube, obj, ref, result):
            continue
        live = kube.get(ref)
        if live is not None and (other := foreign_controller(live, owner_uid)):
            raise ChildConflict(f"{ref} already exists and is controlled by {other.get('kind')} "
                                f"{other.get('name')}; rename or delete it")
        action = plan(obj, live)
        if action is None:
            result.live[ref.kind] = live
            continue
        try:
            after = kube.apply(obj)
        except ApiException as e:
            if transient(e):
                raise
            raise ApplyRejected(ref, e) from None
        fields = tuple(drifted_fields(live, obj)) if action == REPAIRED else ()
        result.changes.append(Change(ref, action, fields, lws_replicas(live), lws_replicas(after)))
        result.live[ref.kind] = after
    return result


def _applied_unread(kube: Kube, obj: dict[str, Any], ref: Ref, result: Result) -> bool:
    """The apply of a presumably new child, without reading it first; False: read it after all."""
    try:
        after, created = kube.apply_new(obj)
    except ApiException as e:
        if transient(e):
            raise
        return False  # e.g. someone else's controller reference: the read path says whose
    if created:
        result.changes.append(Change(ref, CREATED, (), None, lws_replicas(after)))
    else:
        log.info("applied %s over what an interrupted first pass left", ref)
    result.live[ref.kind] = after
    return True
