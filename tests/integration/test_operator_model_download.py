"""The operator against the real control plane, for spec.model.hub: it reads the download init
containers' states and termination messages from the pods' status (as the kubelet writes them) into
the ModelDownloading condition, Degraded with the download's reason, and Events.

No kubelet runs here: the test writes the pods' status through the /status subresource."""
from __future__ import annotations

import json

import pytest

from sglang_operator.render.hub import DOWNLOAD_CONTAINER
from tests.support.kube import Api, wait_for_api
from tests.support.operator import example

from .pods import create_group
from .test_operator_reconcile import operator  # noqa: F401 - the module's operator process (all namespaces)

pytestmark = pytest.mark.cluster


def set_download(api: Api, pod: str, state: dict, last: dict | None = None) -> None:
    st = {"name": DOWNLOAD_CONTAINER, "image": "sglang:test", "imageID": "", "ready": False, "restartCount": 0,
          "state": state, **({"lastState": {"terminated": last}} if last else {})}
    api.core.patch_namespaced_pod_status(pod, api.ns, {"status": {"phase": "Pending", "initContainerStatuses": [st]}})


def test_download_progress_failure_and_recovery_reach_the_status(operator, api):
    m = example("hub", "examples/hub-model.yaml")
    m["spec"]["parallelism"] = {"tp": 1, "dp": 1}
    api.create(m)
    wait_for_api(lambda: api.lws_or_none("hub"), what="the LeaderWorkerSet")
    (pod,) = create_group(api, "hub", init_containers=(DOWNLOAD_CONTAINER,))

    set_download(api, pod, {"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    c = wait_for_api(lambda: (c := api.condition("hub", "ModelDownloading")) and c["status"] == "True" and c,
                     what="ModelDownloading True")
    assert f"kubectl -n {api.ns} logs {pod} -c model-download -f" in c["message"]

    message = json.dumps({"reason": "Unauthorized", "message": "meta-llama/Llama-3.1-8B-Instruct is gated"})
    set_download(api, pod, {"terminated": {"exitCode": 1, "reason": "Error", "message": message,
                                           "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z"}})
    d = wait_for_api(lambda: (d := api.condition("hub", "Degraded")) and d["status"] == "True" and d,
                     what="Degraded True")
    assert d["reason"] == "ModelUnauthorized" and "is gated" in d["message"]
    assert api.condition("hub", "ModelDownloading")["reason"] == "Unauthorized"

    set_download(api, pod, {"terminated": {"exitCode": 0, "reason": "Completed",
                                           "startedAt": "2026-01-01T00:01:00Z", "finishedAt": "2026-01-01T00:02:00Z"}})
    wait_for_api(lambda: api.condition("hub", "Degraded")["status"] == "False"
                 and api.condition("hub", "ModelDownloading")["reason"] == "Downloaded", what="recovery")
    events = wait_for_api(lambda: {"ModelDownloading", "ModelUnauthorized", "ModelDownloaded", "Recovered"}
                          <= {e["reason"] for e in api.events("hub")} and api.events("hub"), what="the events")
    warning = next(e for e in events if e["reason"] == "ModelUnauthorized")
    assert warning["type"] == "Warning" and "is gated" in warning["message"]
