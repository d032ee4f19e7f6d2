"""An in-memory stand-in for kube.client.Kube, for unit tests of the reconciler's and the
autoscaler's logic (the integration tests use the real API server). It keeps objects by Ref, counts
writes, bumps resourceVersion on each, and answers a precondition mismatch with a 409 and a second
controller reference with a 422, as the API server does."""
from __future__ import annotations

import copy
from typing import Any, Mapping

from kubernetes.client.exceptions import ApiException

from sglang_operator.kube.client import Ref
from sglang_operator.kube.errors import ResourceTypeMissing


class FakeKube:
    def __init__(self, field_manager: str = "test", *, missing_kinds: tuple[str, ...] = (), pods: list | None = None):
        self.field_manager = field_manager
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (kind, name, subresource)
        self.missing_kinds, self.pods, self._rv = missing_kinds, pods or [], 0
        self.reads: list[Ref] = []
        self.blind: list[Ref] = []  # applied without a read first (apply_new)
        self.delete_status: int | None = None  # answer every delete with this HTTP error (403: RBAC)

    def _key(self, ref: Ref) -> tuple[str, str, str]:
        if ref.kind in self.missing_kinds:
            raise ResourceTypeMissing(ref.kind)
        return ref.kind, ref.namespace, ref.name

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as if someone else had created it."""
        obj = copy.deepcopy(dict(obj))
        self._rv += 1
        obj.setdefault("metadata", {}).setdefault("uid", f"uid-{obj['metadata']['name']}")
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self.objects[self._key(Ref.of(obj))] = obj
        return copy.deepcopy(obj)

    def get(self, ref: Ref) -> dict[str, Any] | None:
        self.reads.append(ref)
        obj = self.objects.get(self._key(ref))
        return copy.deepcopy(obj) if obj is not None else None

    def apply(self, obj: Mapping[str, Any], *, subresource: str = "") -> dict[str, Any]:
        key = self._key(Ref.of(obj))
        live = self.objects.get(key)
        want_rv = obj["metadata"].get("resourceVersion")
        if want_rv is not None and (live is None or live["metadata"]["resourceVersion"] != want_rv):
            raise ApiException(status=409, reason="Conflict")
        merged = copy.deepcopy(live) if live is not None else {"metadata": {}}
        if subresource == "status":
            merged["status"] = {**(merged.get("status") or {}), **obj["status"]}
        else:
            for k, v in obj.items():
                if k == "metadata":
                    meta = merged["metadata"]
                    for mk, mv in v.items():
                        if mk == "annotations":
                            meta["annotations"] = {**(meta.get("annotations") or {}), **mv}
                        elif mk == "ownerReferences":  # merged by uid, as server-side apply does
                            refs = {r["uid"]: r for r in (meta.get("ownerReferences") or []) + copy.deepcopy(mv)}
                            if sum(1 for r in refs.values() if r.get("controller")) > 1:
                                raise ApiException(status=422, reason="Only one reference can have Controller set to true")
                            meta["ownerReferences"] = list(refs.values())
                        elif mk != "resourceVersion":
                            meta[mk] = copy.deepcopy(mv)
                elif k == "spec":
                    merged["spec"] = {**(merged.get("spec") or {}), **copy.deepcopy(v)}
                elif k != "status":
                    merged[k] = copy.deepcopy(v)
        self.writes.append((obj["kind"], obj["metadata"]["name"], subresource))
        return self.put(merged)

    def apply_new(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        created = self.objects.get(self._key(Ref.of(obj))) is None
        self.blind.append(Ref.of(obj))
        return self.apply(obj), created

    def delete(self, ref: Ref, uid: str) -> bool:
        """Kube.delete: False when gone or replaced (uid precondition), no dependents to collect."""
        if self.delete_status is not None:
            raise ApiException(status=self.delete_status, reason="Forbidden")
        live = self.objects.get(self._key(ref))
        if live is None or live["metadata"]["uid"] != uid:
            return False
        self.writes.append((ref.kind, ref.name, "delete"))
        del self.objects[self._key(ref)]
        return True

    def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        """The pods given to the constructor (or appended to .pods) that match; a pod without a
        namespace is in every one."""
        return [copy.deepcopy(p) for p in self.pods if (p.get("metadata") or {}).get("namespace", namespace) == namespace
                and selector.items() <= ((p.get("metadata") or {}).get("labels") or {}).items()]
