"""spec.router as the integration tests read it: the router's Deployment, Service and worker
ConfigMap, the worker list SMG would read, the router pods (the Deployment's ReplicaSet makes them;
with no kubelet their readiness is set through /status), and a watch that keeps every version of
the worker list so a test can say a dead worker was never listed again."""
from __future__ import annotations

import json
import threading
import time

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from sglang_operator.render.router import MANIFEST_KEY, ROUTER_LABEL, router_name, workers_configmap_name

from tests.support.kube import Api, _or_none

from .pods import set_ready


def router_objects(api: Api, name: str) -> dict[str, dict | None]:
    apps, ser = client.AppsV1Api(api.api_client), api.api_client.sanitize_for_serialization
    return {"Deployment": _or_none(lambda: ser(apps.read_namespaced_deployment(router_name(name), api.ns))),
            "Service": api.service(router_name(name)),
            "ConfigMap": _or_none(lambda: ser(api.core.read_namespaced_config_map(workers_configmap_name(name), api.ns)))}


def manifest_workers(cm: dict | None) -> list[dict] | None:
    return json.loads(cm["data"][MANIFEST_KEY])["workers"] if cm else None


def workers(api: Api, name: str) -> list[dict] | None:
    """The worker records of `<name>-router-workers` (None: no ConfigMap)."""
    return manifest_workers(router_objects(api, name)["ConfigMap"])


def router_pods(api: Api, name: str) -> list[str]:
    pods = api.core.list_namespaced_pod(api.ns, label_selector=f"{ROUTER_LABEL}={name}").items
    return sorted(p.metadata.name for p in pods if not p.metadata.deletion_timestamp)


def set_router_pods_ready(api: Api, name: str, ready: bool) -> None:
    """What the kubelet reports when SMG's /readiness passes (a worker is healthy) or stops passing;
    the ReplicaSet and Deployment controllers turn it into the Deployment's readyReplicas."""
    for pod in router_pods(api, name):
        set_ready(api, pod, ready)


class WorkerHistory:
    """Every version of the worker ConfigMap, from a watch started before the test acts."""

    def __init__(self, api: Api, name: str):
        self.api, self.name = api, name
        self.versions: list[tuple[float, list[dict]]] = []  # (monotonic time seen, workers)
        self._stop = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector = f"metadata.name={workers_configmap_name(self.name)}"
        while not self._stop.is_set():
            try:
                for ev in self._watch.stream(self.api.core.list_namespaced_config_map, self.api.ns,
                                             field_selector=selector, timeout_seconds=5):
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self.versions.append((time.monotonic(), manifest_workers(
                            self.api.api_client.sanitize_for_serialization(ev["object"]))))
            except (ApiException, ProtocolError):  # the stream ended (stop() or the server): watch again
                time.sleep(0.2)

    def listed_again(self, uid: str, since: float) -> list[list[dict]]:
        """Versions that list `uid` again after the first version since `since` that dropped it
        (never: [])."""
        later = [(seen, w) for seen, w in self.versions if seen >= since]
        gone = next((seen for seen, w in later if all(r["id"] != uid for r in w)), None)
        return [] if gone is None else [w for seen, w in later if seen > gone and any(r["id"] == uid for r in w)]

    def stop(self) -> None:
        self._stop.set()
        self._watch.stop()
        self._thread.join(timeout=10)
