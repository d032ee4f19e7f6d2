"""Model sources: spec.model.hub (API, the download init container, its volumes), the OCI image
volume of model.volume.image, and the status the download's pods lead to (pure, no cluster)."""
from __future__ import annotations

import json

import pytest

from radix_runtime import fetch_model
from sglang_operator.api import InvalidSpec, parse_spec
from sglang_operator.kube.conditions import find
from sglang_operator.reconcile.change_events import for_model_download
from sglang_operator.reconcile.status import Observed, compute_status, conditions
from sglang_operator.reconcile.triggers import Seen
from sglang_operator.render import render_all
from sglang_operator.render.engines import HUB_MODEL_PATH
from sglang_operator.render.hub import DOWNLOAD_CONTAINER

from .lws_pods import pod
from .test_crd_generation import _schema
from .test_reconcile_status import T0, lws

HUB = {"id": "meta-llama/Llama-3.1-8B-Instruct", "tokenSecret": {"name": "hf", "key": "token"},
       "cache": {"persistentVolumeClaim": {"claimName": "hf-cache"}}}


def templates(spec: dict) -> dict[str, dict]:
    lws_obj = render_all("demo", "ns", spec)[0]
    t = lws_obj["spec"]["leaderWorkerTemplate"]
    return {role: t[f"{role}Template"]["spec"] for role in ("leader", "worker") if f"{role}Template" in t}


# --- API --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model,expected", [
    ({}, "spec.model: model must set exactly one of path (a directory in the pod) and hub"),
    ({"path": "/m", "hub": {"id": "a/b"}}, "spec.model: model must set exactly one of path"),
    ({"hub": {"id": "a/b"}, "volume": {"hostPath": {"path": "/x"}}},
     "spec.model.volume: model.volume cannot be combined with model.hub"),
    ({"hub": {"id": "a/b", "cache": {}}}, "spec.model.hub.cache: model.hub.cache must set exactly one of"),
    ({"hub": {"id": "a/b", "cache": {"emptyDir": {}, "hostPath": {"path": "/c"}}}}, "model.hub.cache must set"),
    ({"hub": {"id": "a--b/c"}}, "spec.model.hub.id: model.hub.id must not contain '--' or '..'"),
    ({"hub": {"id": "a/b/c"}}, "spec.model.hub.id: String should match pattern"),
    ({"hub": {"id": "a/b", "revision": "my branch"}}, "spec.model.hub.revision"),
    ({"hub": {"id": "a/b", "endpoint": "hub.local"}}, "spec.model.hub.endpoint"),
    ({"hub": {"id": "a/b", "tokenSecret": {"name": "hf"}}}, "spec.model.hub.tokenSecret.key"),
])
def test_invalid_model_sources_name_the_field(model, expected):
    with pytest.raises(InvalidSpec) as e:
        parse_spec({"model": model})
    assert expected in str(e.value)


def test_hub_spec_round_trips_without_defaults():
    """An omitted revision stays omitted (main is the downloader's default, not a stored one), and
    the CRD defaults nothing under model.hub: an older operator would reject defaulted fields."""
    s = parse_spec({"model": {"hub": {"id": "org/m"}}})
    assert s.model.to_api() == {"hub": {"id": "org/m"}} and s.model.hub.effective_revision == "main"
    hub_schema = _schema()["properties"]["spec"]["properties"]["model"]["properties"]["hub"]
    assert "default" not in json.dumps(hub_schema)
    assert {r["rule"] for r in _schema()["properties"]["spec"]["properties"]["model"]["x-kubernetes-validations"]} \
        == {"has(self.path) != has(self.hub)", "!has(self.hub) || !has(self.volume)"}


# --- rendering --------------------------------------------------------------------------------------

def test_every_pod_of_a_group_downloads_before_the_server_starts():
    pods = templates({"model": {"hub": HUB}, "parallelism": {"tp": 16, "gpusPerPod": 8}})
    assert set(pods) == {"leader", "worker"}
    for spec in pods.values():
        (init,) = spec["initContainers"]
        assert init["name"] == DOWNLOAD_CONTAINER and init["command"] == ["python", "-m", "radix_runtime.fetch_model"]
        assert init["terminationMessagePath"] == "/dev/termination-log"
        assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
        args = fetch_model.parse_args(init["args"])  # the downloader's own argparse takes them
        assert (args.repo_id, args.revision, str(args.link)) == (HUB["id"], "main", HUB_MODEL_PATH)
        env = {e["name"]: e for e in init["env"]}
        assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
        assert "HF_ENDPOINT" not in env
        server = spec["containers"][0]
        assert "HF_TOKEN" not in {e["name"] for e in server.get("env", [])}  # only the downloader gets it
        assert not any("hf" in a.lower() and "token" in a.lower() for a in init["args"] + server["args"])
        assert server["args"][server["args"].index("--model-path") + 1] == HUB_MODEL_PATH
        assert server["args"][server["args"].index("--served-model-name") + 1] == HUB["id"]
        vols = {v["name"]: v for v in spec["volumes"]}
        assert vols["model-cache"]["persistentVolumeClaim"] == {"claimName": "hf-cache"}
        assert vols["model-link"] == {"name": "model-link", "emptyDir": {}}
        assert {m["name"]: m.get("readOnly", False) for m in init["volumeMounts"]} == \
            {"model-cache": False, "model-link": False}
        assert {m["name"]: m["readOnly"] for m in server["volumeMounts"] if m["name"].startswith("model")} == \
            {"model-cache": True, "model-link": True}
        assert init["securityContext"] == server["securityContext"] and init["securityContext"] is not \
            server["securityContext"]


@pytest.mark.parametrize("cache,volume", [
    (None, {"emptyDir": {}}),
    ({"emptyDir": {"sizeLimit": "40Gi"}}, {"emptyDir": {"sizeLimit": "40Gi"}}),
    ({"hostPath": {"path": "/var/cache/models"}}, {"hostPath": {"path": "/var/cache/models", "type": "DirectoryOrCreate"}}),
])
def test_cache_volumes(cache, volume):
    hub = {"id": "org/m", **({"cache": cache} if cache else {})}
    spec = templates({"model": {"hub": hub}})["leader"]
    assert {k: v for k, v in next(v for v in spec["volumes"] if v["name"] == "model-cache").items()
            if k != "name"} == volume


def test_endpoint_revision_and_user_env_reach_the_downloader():
    spec = templates({"model": {"hub": {"id": "org/m", "revision": "v1.0", "endpoint": "https://hub.corp:8443"}},
                      "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]})["leader"]
    init = spec["initContainers"][0]
    env = [e["name"] for e in init["env"]]
    assert env[0] == "HTTPS_PROXY" and "HF_ENDPOINT" in env and "HF_TOKEN" not in env
    assert {e["name"]: e.get("value") for e in init["env"]}["HF_ENDPOINT"] == "https://hub.corp:8443"
    assert fetch_model.parse_args(init["args"]).revision == "v1.0"


def test_upstream_sglang_downloads_with_the_bundled_image_as_root():
    spec = templates({"model": {"hub": {"id": "org/m"}}, "engine": "sglang", "image": "lmsysorg/sglang:v0.5.2"})
    init, server = spec["leader"]["initContainers"][0], spec["leader"]["containers"][0]
    assert init["image"].startswith("ghcr.io/sglang-fleet/radix-runtime:") and server["image"] == "lmsysorg/sglang:v0.5.2"
    assert init["securityContext"]["runAsUser"] == 0 and "runAsUser" not in server["securityContext"]


def test_path_sources_render_no_download():
    spec = templates({"model": {"path": "/models/m", "volume": {"image": {"reference": "registry.local/llama:1",
                                                                          "pullPolicy": "IfNotPresent"}}}})["leader"]
    assert "initContainers" not in spec
    assert next(v for v in spec["volumes"] if v["name"] == "model") == {
        "name": "model", "image": {"reference": "registry.local/llama:1", "pullPolicy": "IfNotPresent"}}
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "model")
    assert mount == {"name": "model", "mountPath": "/models", "readOnly": True}


# --- status -------------------------------------------------------------------------------------------

def hub_pod(worker: int, state: dict | None, last: dict | None = None, ready: bool = False) -> dict:
    p = pod(0, worker, ready=ready)
    p["spec"] = {"initContainers": [{"name": DOWNLOAD_CONTAINER}], "containers": [{"name": "server"}]}
    if state is not None:
        st = {"name": DOWNLOAD_CONTAINER, "state": state}
        if last is not None:
            st["lastState"] = {"terminated": last}
        p["status"]["initContainerStatuses"] = [st]
    return p


RUNNING, DONE = {"running": {"startedAt": "t"}}, {"terminated": {"exitCode": 0, "reason": "Completed"}}
UNAUTHORIZED = {"exitCode": 1, "reason": "Error",
                "message": json.dumps({"reason": "Unauthorized", "message": "org/m is gated: accept its terms"})}


def conds(pods, previous=None) -> dict[str, dict]:
    o = Observed("x", "ns", 1, 1, "http://x", lws(1, 1, 0), None, pods)
    return {c["type"]: c for c in conditions(o, previous)}


def test_downloading_pods_say_so_with_the_command_to_follow_them():
    c = conds([hub_pod(0, RUNNING), hub_pod(1, None)])
    assert (c["ModelDownloading"]["status"], c["ModelDownloading"]["reason"]) == ("True", "Downloading")
    assert "1/2 pods downloading" in c["ModelDownloading"]["message"]
    assert "kubectl -n ns logs x-0-0 -c model-download -f" in c["ModelDownloading"]["message"]
    assert c["Degraded"]["status"] == "False"


def test_done_and_waiting():
    assert conds([hub_pod(0, DONE, ready=True)])["ModelDownloading"]["reason"] == "Downloaded"
    assert conds([hub_pod(0, DONE), hub_pod(1, {"waiting": {"reason": "PodInitializing"}})])[
        "ModelDownloading"]["reason"] == "Waiting"


@pytest.mark.parametrize("state,last", [
    ({"terminated": UNAUTHORIZED}, None),  # just exited
    ({"waiting": {"reason": "CrashLoopBackOff"}}, UNAUTHORIZED),  # waiting to retry
])
def test_a_failed_download_is_degraded_with_its_reason(state, last):
    c = conds([hub_pod(0, state, last)])
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("True", "ModelUnauthorized")
    assert "accept its terms" in c["Degraded"]["message"] and "logs x-0-0 -c model-download" in c["Degraded"]["message"]
    assert (c["ModelDownloading"]["status"], c["ModelDownloading"]["reason"]) == ("False", "Unauthorized")


def test_a_crash_without_a_message_is_download_failed_with_the_log_tail():
    c = conds([hub_pod(0, {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "a\nlast line"}})])
    assert c["Degraded"]["reason"] == "ModelDownloadFailed"
    assert "exit code 137, OOMKilled: last line" in c["Degraded"]["message"]


def test_the_reason_stays_while_the_recreated_group_retries_and_clears_once_every_pod_has_the_model():
    failed = compute_status(Observed("x", "ns", 1, 1, "u", lws(1, 1, 0), None, [hub_pod(0, {"terminated": UNAUTHORIZED})]),
                            None, T0)
    # LWS recreated the group: a fresh pod downloads again, the failed one and its message are gone.
    retry = compute_status(Observed("x", "ns", 1, 1, "u", lws(1, 1, 0), None, [hub_pod(0, RUNNING)]), failed, T0)
    assert find(retry, "Degraded")["reason"] == "ModelUnauthorized"
    assert find(retry, "ModelDownloading")["reason"] == "Downloading"
    # Another pod having the model is not enough: the retrying one may fail again.
    half = compute_status(Observed("x", "ns", 1, 1, "u", lws(1, 1, 0), None, [hub_pod(0, RUNNING), hub_pod(1, DONE)]),
                          retry, T0)
    assert find(half, "Degraded")["reason"] == "ModelUnauthorized"
    fixed = compute_status(Observed("x", "ns", 1, 1, "u", lws(1, 1, 0), None, [hub_pod(0, DONE), hub_pod(1, DONE)]),
                           half, T0)
    assert find(fixed, "Degraded")["status"] == "False"
    # Pods without the download container (a path source) never get the condition.
    assert "ModelDownloading" not in conds([pod(0, 0)])


def test_events_and_watch_triggers():
    running = conds([hub_pod(0, RUNNING)])["ModelDownloading"]
    done = conds([hub_pod(0, DONE)])["ModelDownloading"]
    assert [e.reason for e in for_model_download(None, running)] == ["ModelDownloading"]
    assert for_model_download(running, running) == []
    assert [e.reason for e in for_model_download(running, done)] == ["ModelDownloaded"]
    assert for_model_download(done, done) == []
    # The init container's state changes are news for the pod watch (status churn otherwise is not).
    seen, p = Seen(), hub_pod(0, RUNNING)
    p["kind"], p["metadata"]["uid"] = "Pod", "u1"
    assert seen.news("ADDED", p) and not seen.news("MODIFIED", p)
    p["status"]["initContainerStatuses"][0]["state"] = {"terminated": UNAUTHORIZED}
    assert seen.news("MODIFIED", p)
