"""The Kubernetes API as the operator's integration tests read it: typed-client shortcuts for
SGLangDeployments and their children (admin credentials unless given others), and settling checks."""
from __future__ import annotations

import time
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sglang_operator.api.lws import LWS_GROUP, LWS_PLURAL, LWS_VERSION
from sglang_operator.api.names import GROUP, PLURAL, VERSION

from .waiting import wait_for

LWS = (LWS_GROUP, LWS_VERSION, LWS_PLURAL)


def not_yet(e: BaseException) -> bool:
    """For wait_for: an object not there yet (404) or changed under us (409) means "keep polling"."""
    return isinstance(e, ApiException) and e.status in (404, 409)


def wait_for_api(check: Callable[[], Any], timeout: float = 10, interval: float = 0.1, what: str = "condition") -> Any:
    """wait_for, with 404 and 409 answers counting as "not yet"."""
    return wait_for(check, timeout=timeout, interval=interval, what=what, ignore=not_yet)


class Api:
    """Typed-client shortcuts used by the tests (admin credentials unless given others)."""

    def __init__(self, api_client: client.ApiClient, namespace: str):
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.api_client = api_client

    def create(self, manifest: dict) -> dict:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, manifest)

    def sgld(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def patch_sgld(self, name: str, patch: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, patch)

    def delete_sgld(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def delete_all_sglds(self, timeout: float = 20) -> None:
        """Delete this namespace's SGLangDeployments and wait until they are gone (the operator adds
        no finalizer, so this needs no running operator)."""
        for item in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"]:
            _or_none(lambda: self.delete_sgld(item["metadata"]["name"]))
        wait_for_api(lambda: not self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"],
                 timeout=timeout, interval=0.3, what="SGLangDeployments to be deleted")

    def lws(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(*LWS[:2], self.ns, LWS[2], name)

    def lws_or_none(self, name: str) -> dict | None:
        return _or_none(lambda: self.lws(name))

    def patch_lws(self, name: str, patch: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(*LWS[:2], self.ns, LWS[2], name, patch)

    def patch_lws_status(self, name: str, status: dict) -> dict:
        return self.custom.patch_namespaced_custom_object_status(*LWS[:2], self.ns, LWS[2], name, {"status": status})

    def service(self, name: str) -> dict | None:
        return _or_none(lambda: self.api_client.sanitize_for_serialization(
            self.core.read_namespaced_service(name, self.ns)))

    def pdb(self, name: str) -> dict | None:
        return _or_none(lambda: self.api_client.sanitize_for_serialization(
            self.policy.read_namespaced_pod_disruption_budget(name, self.ns)))

    def children(self, name: str) -> dict[str, dict | None]:
        return {"LeaderWorkerSet": self.lws_or_none(name), "Service": self.service(f"{name}-api"),
                "PodDisruptionBudget": self.pdb(name)}

    def condition(self, name: str, type_: str) -> dict | None:
        st = self.sgld(name).get("status") or {}
        return next((c for c in st.get("conditions") or [] if c["type"] == type_), None)

    def events(self, involved: str | None = None) -> list[dict]:
        items = self.core.list_namespaced_event(self.ns).items
        return [{"type": e.type, "reason": e.reason, "message": e.message, "object": e.involved_object.name}
                for e in items if involved is None or e.involved_object.name == involved]


def _or_none(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def subset(live: Any, want: Any, path: str = "") -> list[str]:
    """Where `live` lacks what `want` has (the renderer's output must be in the live object)."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return [path or "."]
        return [p for k, v in want.items() for p in (subset(live[k], v, f"{path}.{k}") if k in live else [f"{path}.{k}"])]
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return [path]
        return [p for i, (lv, wv) in enumerate(zip(live, want)) for p in subset(lv, wv, f"{path}[{i}]")]
    return [] if live == want else [f"{path}: {live!r} != {want!r}"]


def resource_versions(api: Api, name: str) -> dict[str, str | None]:
    out = {"SGLangDeployment": api.sgld(name)["metadata"]["resourceVersion"]}
    for kind, obj in api.children(name).items():
        out[kind] = obj["metadata"]["resourceVersion"] if obj else None
    return out


def settled_versions(api: Api, name: str, quiet: float = 2.0, timeout: float = 30) -> dict[str, str | None]:
    """resourceVersions once nothing has changed for `quiet` seconds: a first Ready condition can be
    followed by more status writes (child events arrive one by one), which a test must not blame on
    whatever it does next."""
    deadline = time.monotonic() + timeout
    last, since = resource_versions(api, name), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = resource_versions(api, name)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
    raise AssertionError(f"{name} and its children kept changing for {timeout}s: {last}")
