"""What applying the rendered children would do (pure): the objects we send, and for each one
whether it would be created, updated, repaired or left alone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..api.lws import LWS_KIND, spec_replicas
from ..kube.client import Ref
from ..render.owner import with_owner
from .diff import FINGERPRINT, in_sync, with_fingerprint, without_fields

CREATED, UPDATED, REPAIRED = "created", "updated", "repaired"


@dataclass(frozen=True)
class Change:
    ref: Ref
    action: str
    fields: tuple[str, ...] = ()  # paths that had drifted (names only: values may be secret)
    replicas_before: int | None = None
    replicas_after: int | None = None


def desired_children(rendered: Iterable[Mapping[str, Any]], owner_meta: Mapping[str, Any],
                     omit: Mapping[str, Iterable[str]] | None = None) -> list[dict[str, Any]]:
    """Rendered objects, owned by the SGLangDeployment, minus the fields `omit` names per kind (the
    ones left to another field manager), fingerprinted."""
    return [with_fingerprint(without_fields(with_owner(obj, owner_meta), (omit or {}).get(obj["kind"], ())))
            for obj in rendered]


def plan(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> str | None:
    """What applying `desired` over `live` would be: None when nothing would change."""
    if live is None:
        return CREATED
    if in_sync(live, desired):
        return None
    have = (live.get("metadata", {}).get("annotations") or {}).get(FINGERPRINT)
    return REPAIRED if have == desired["metadata"]["annotations"][FINGERPRINT] else UPDATED


def foreign_controller(live: Mapping[str, Any], owner_uid: str) -> Mapping[str, Any] | None:
    for ref in live.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") != owner_uid:
            return ref
    return None


def lws_replicas(obj: Mapping[str, Any] | None) -> int | None:
    """spec.replicas when `obj` is a LeaderWorkerSet (for the Scaled event), else None."""
    return spec_replicas(obj) if obj and obj.get("kind") == LWS_KIND else None
