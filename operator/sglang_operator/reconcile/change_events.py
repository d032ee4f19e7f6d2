"""Which Events a reconcile pass emits (pure): what it changed and what went wrong.

Messages name objects and fields, never values (env values and args may hold secrets). Warnings are
emitted when the Degraded reason changes, not on every retry, so a stuck object does not flood the
event stream.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..kube.client import Ref
from ..kube.events import NORMAL, WARNING, Event
from .plan import CREATED, REPAIRED, UPDATED, Change


def _names(changes: list[Change]) -> str:
    return ", ".join(f"{c.ref.kind} {c.ref.name}" for c in changes)


def for_changes(changes: list[Change], *, reconciled_before: bool) -> list[Event]:
    """`reconciled_before`: the object already had a status from us, so a missing child was deleted by
    someone (recreated) rather than never created."""
    out: list[Event] = []
    created = [c for c in changes if c.action == CREATED]
    if created:
        reason = "Recreated" if reconciled_before else "Created"
        out.append(Event(NORMAL, reason, f"{'Recreated deleted' if reconciled_before else 'Created'} {_names(created)}"))
    updated = [c for c in changes if c.action == UPDATED]
    if updated:
        out.append(Event(NORMAL, "Updated", f"Applied the new spec to {_names(updated)}"))
    for c in changes:
        if c.action == REPAIRED:
            fields = ", ".join(c.fields[:8]) + (" ..." if len(c.fields) > 8 else "")
            out.append(Event(NORMAL, "DriftRepaired", f"Reverted manual changes to {c.ref.kind} {c.ref.name} ({fields})"))
        if c.action != CREATED and c.replicas_before is not None and c.replicas_after is not None \
                and c.replicas_before != c.replicas_after:
            out.append(Event(NORMAL, "Scaled", f"Scaled {c.ref.kind} {c.ref.name} from {c.replicas_before} "
                                               f"to {c.replicas_after} groups"))
    return out


def for_degraded(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[Event]:
    """A Warning when the object becomes Degraded or its reason changes; Normal when it recovers."""
    was = before is not None and before.get("status") == "True"
    if after.get("status") == "True":
        if was and before.get("reason") == after.get("reason"):
            return []
        return [Event(WARNING, str(after.get("reason")), str(after.get("message")))]
    if was:
        return [Event(NORMAL, "Recovered", f"No longer degraded (was: {before.get('reason')})")]
    return []


def for_model_download(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[Event]:
    """Normal Events when pods start downloading spec.model.hub and when every pod has it (a failed
    download is a Degraded reason: for_degraded's Warning)."""
    if after is None:
        return []
    was = before or {}
    if after.get("status") == "True" and was.get("status") != "True":
        return [Event(NORMAL, "ModelDownloading", str(after.get("message")))]
    if after.get("reason") == "Downloaded" and was.get("reason") != "Downloaded":
        return [Event(NORMAL, "ModelDownloaded", str(after.get("message")))]
    return []


def for_router(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
               workers: list[Mapping[str, str]] | None, removed: Sequence[Ref] = ()) -> list[Event]:
    """The router's Events: its worker list changed (a group became Ready, restarted or went away),
    RouterReady turned True (Normal) or turned False from True (Warning), spec.router turned off
    deleted its objects (Normal)."""
    out: list[Event] = []
    if workers is not None:
        out.append(Event(NORMAL, "RouterWorkers", f"The router now lists {len(workers)} worker(s): "
                         + (", ".join(w["url"] for w in workers) or "none")))
    if removed:
        out.append(Event(NORMAL, "RouterRemoved", "spec.router is off: deleted "
                         + ", ".join(f"{r.kind} {r.name}" for r in removed)))
    if after is None:
        return out
    was = (before or {}).get("status")
    if after.get("status") == "True" and was != "True":
        out.append(Event(NORMAL, "RouterReady", str(after.get("message"))))
    elif after.get("status") != "True" and was == "True":
        out.append(Event(WARNING, "RouterNotReady", f"{after.get('reason')}: {after.get('message')}"))
    return out
