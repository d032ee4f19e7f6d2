"""The few Kubernetes API calls the controllers make, as plain dicts over the official client.

Raw REST (GET, server-side apply PATCH) instead of typed models: the objects come from the renderer
as dicts and are compared as dicts, and one code path serves built-in kinds and the LWS CRD alike.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..api.lws import LWS_API_VERSION, LWS_KIND, LWS_PLURAL
from ..api.names import API_VERSION, KIND, PLURAL
from ..render.labels import lws_name, selector_string
from ..metrics import REQUESTS
from .errors import ResourceTypeMissing

# apiVersion/kind -> plural, for the kinds we own (no discovery round trips needed).
PLURALS = {
    (LWS_API_VERSION, LWS_KIND): LWS_PLURAL,
    ("v1", "Service"): "services",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("apps/v1", "Deployment"): "deployments",  # the router (SMG)
    ("v1", "ConfigMap"): "configmaps",  # the router's worker list
    (API_VERSION, KIND): PLURAL,
}


@dataclass(frozen=True)
class Ref:
    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> "Ref":
        m = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], m["namespace"], m["name"])

    @property
    def collection(self) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{prefix}/namespaces/{self.namespace}/{PLURALS[(self.api_version, self.kind)]}"

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.name}"

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def sgld_ref(namespace: str, name: str) -> Ref:
    return Ref(API_VERSION, KIND, namespace, name)


def lws_ref(namespace: str, name: str) -> Ref:
    """The LeaderWorkerSet of the SGLangDeployment `name`."""
    return Ref(LWS_API_VERSION, LWS_KIND, namespace, lws_name(name))


def load_api_client(connections: int | None = None) -> client.ApiClient:
    """In-cluster credentials (the pod's ServiceAccount), else the kubeconfig ($KUBECONFIG or
    ~/.kube/config): the same order as kopf.login_via_client, which handlers.py uses for kopf.
    `connections`: the pool size, one per thread that calls at once (beyond the pool, each request
    opens and drops a TLS connection of its own)."""
    cfg = client.Configuration()
    if connections:
        cfg.connection_pool_maxsize = connections
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)
    api = client.ApiClient(cfg)
    api.user_agent = "sglang-operator"
    return api


class Kube:
    def __init__(self, api: client.ApiClient, field_manager: str, timeout: float = 10,
                 applied: Callable[[Mapping[str, Any]], None] | None = None):
        """`applied`: called with the object every apply of a whole object returns (not a
        subresource's), e.g. so that its watch event is known news already (reconcile/triggers.py)."""
        self.api, self.field_manager, self.timeout, self.applied = api, field_manager, timeout, applied

    def request(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                body: Any = None, content_type: str | None = None) -> Any:
        return self._call(method, path, query=query, body=body, content_type=content_type)[1]

    def _call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
              body: Any = None, content_type: str | None = None) -> tuple[int, Any]:
        """(HTTP status, parsed body)."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        m, url, headers, body, _ = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"])
        REQUESTS.labels(method).inc()
        resp = self.api.call_api(m, url, header_params=headers, body=body, _request_timeout=self.timeout)
        resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(http_resp=resp)
        return resp.status, json.loads(resp.data) if resp.data else None

    def _missing_type(self, err: ApiException, ref: Ref) -> bool:
        # An unknown object answers a Status naming it; an unserved kind answers "404 page not found".
        if err.status != 404:
            return False
        try:
            details = json.loads(err.body or "").get("details") or {}
        except ValueError:
            details = {}
        if details.get("name"):
            return False
        try:
            self.request("GET", "/api/v1" if ref.api_version == "v1" else f"/apis/{ref.api_version}")
        except ApiException as e:
            return e.status == 404
        return False

    def get(self, ref: Ref) -> dict[str, Any] | None:
        try:
            return self.request("GET", ref.path)
        except ApiException as e:
            if self._missing_type(e, ref):
                raise ResourceTypeMissing(ref.kind) from None
            if e.status == 404:
                return None
            raise

    def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        """The pods of `namespace` that carry every label of `selector`."""
        found = self.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                             query=[("labelSelector", selector_string(selector))])
        return (found or {}).get("items") or []

    def delete(self, ref: Ref, uid: str) -> bool:
        """Delete `ref` if it is still the object `uid` (a precondition: an object that replaced it
        under the same name is left alone); its dependents go by garbage collection (background).
        False when it was already gone or replaced."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
                "preconditions": {"uid": uid}}
        try:
            self.request("DELETE", ref.path, body=body, content_type="application/json")
        except ApiException as e:
            if e.status in (404, 409):  # 409: the uid precondition failed
                return False
            raise
        return True

    def apply(self, obj: Mapping[str, Any], *, subresource: str = "") -> dict[str, Any]:
        """Server-side apply as our field manager. force: we are the controller of these objects and
        take back fields someone changed by hand (that is the drift repair)."""
        return self._apply(obj, subresource)[0]

    def apply_new(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """apply() without reading first: (the object, whether this request created it)."""
        after, status = self._apply(obj, "")
        return after, status == 201

    def _apply(self, obj: Mapping[str, Any], subresource: str) -> tuple[dict[str, Any], int]:
        ref = Ref.of(obj)
        query = [("fieldManager", self.field_manager), ("force", "true")]
        try:
            status, after = self._call("PATCH", ref.path + (f"/{subresource}" if subresource else ""), query=query,
                                       body=obj, content_type="application/apply-patch+yaml")
        except ApiException as e:
            if self._missing_type(e, ref):
                raise ResourceTypeMissing(ref.kind) from None
            raise
        if self.applied is not None and not subresource and after:
            self.applied(after)
        return after, status

