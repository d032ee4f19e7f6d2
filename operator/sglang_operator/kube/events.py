"""Kubernetes Events on an SGLangDeployment, posted through the API."""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..api.names import API_VERSION, KIND
from .client import Kube
from .conditions import now, timestamp

NORMAL, WARNING = "Normal", "Warning"
log = logging.getLogger("sglang_operator.events")


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


Poster = Callable[[Mapping[str, Any], Event], None]


def api_poster(kube: Kube) -> Poster:
    """Events written through the API. Not kopf.event: that needs context only kopf's own handler
    tasks carry, and the retry timers, the resync thread and the autoscaler run outside them. A
    failed post is logged, never a reason to fail the pass that caused it."""
    instance = socket.gethostname()

    def post(parent: Mapping[str, Any], e: Event) -> None:
        meta = parent["metadata"]
        stamp = timestamp(now())
        try:
            kube.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", content_type="application/json", body={
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta.get("uid"),
                                   "resourceVersion": meta.get("resourceVersion")},
                "type": e.type, "reason": e.reason, "message": e.message[:1024],
                "source": {"component": "sglang-operator"}, "reportingComponent": "sglang-operator",
                "reportingInstance": instance, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1})
        except Exception as err:  # noqa: BLE001 - an Event is best effort
            log.warning("could not post event %s on %s/%s: %s", e.reason, meta["namespace"], meta["name"], err)
    return post
