"""One autoscaler tick over an in-memory API (fake_kube.py) and real local /metrics servers: what it
reads, what it writes (LWS replicas with the state annotation, its status fields, an Event), and
that an unchanged world writes nothing."""
from __future__ import annotations

import asyncio
import http.server
import threading

import pytest

from sglang_operator.api.lws import LWS_API_VERSION, LWS_KIND
from sglang_operator.autoscale.scrape import leader_pod_selector
from sglang_operator.autoscale.state import STATE_ANNOTATION, state_of
from sglang_operator.autoscale.tick import Autoscaler
from sglang_operator.kube.client import lws_ref, sgld_ref
from sglang_operator.settings import AutoscalerSettings

from .fake_kube import FakeKube

METRIC = "sglang:num_requests_waiting"


def metrics_server(waiting: float) -> http.server.ThreadingHTTPServer:
    body = f"# TYPE {METRIC} gauge\n{METRIC}{{model_name=\"m\"}} {waiting}\n".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def leader_pod(i: int, port: int) -> dict:
    return {"metadata": {"name": f"q-{i}", "labels": leader_pod_selector("q")},
            "spec": {"containers": [{"name": "runtime", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}


def world(waiting: float, *, enabled: bool = True, replicas: int = 1):
    srv = metrics_server(waiting)
    kube = FakeKube("sglang-autoscaler", pods=[leader_pod(0, srv.server_address[1])])
    kube.put({"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment",
              "metadata": {"name": "q", "namespace": "ns", "uid": "u"},
              "spec": {"model": {"path": "/m"}, "autoscaling": {
                  "enabled": enabled, "minReplicas": 1, "maxReplicas": 4, "metric": METRIC, "targetPerReplica": 2,
                  "pollIntervalSeconds": 5, "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [
                      {"type": "Pods", "value": 4, "periodSeconds": 1}]}}}})
    kube.put({"apiVersion": LWS_API_VERSION, "kind": LWS_KIND, "metadata": {"name": "q", "namespace": "ns"},
              "spec": {"replicas": replicas}, "status": {"replicas": replicas, "updatedReplicas": replicas}})
    return srv, kube


@pytest.fixture
def scaler():
    made = []

    def make(waiting: float, **kw):
        srv, kube = world(waiting, **kw)
        made.append(srv)
        posted: list = []
        s = Autoscaler(kube, post=lambda parent, e: posted.append(e), settings=AutoscalerSettings(),
                       clock=lambda: 1000.0)
        return s, kube, posted

    yield make
    for srv in made:
        srv.shutdown()


def test_a_full_queue_scales_up_and_says_why(scaler):
    s, kube, posted = scaler(7)  # 7 waiting, 2 per group: 4 groups
    assert asyncio.run(s.tick("ns", "q")) == 5  # the poll interval
    lws = kube.get(lws_ref("ns", "q"))
    assert lws["spec"]["replicas"] == 4 and state_of(lws).recommendations == ((1000.0, 4),)
    st = kube.get(sgld_ref("ns", "q"))["status"]
    assert st["queueDepth"] == 7 and st["lastScaleTime"] and "desiredReplicas" not in st  # the reconciler's
    assert {c["type"]: c["reason"] for c in st["conditions"]} == {"ScalingActive": "ValidMetricFound",
                                                                  "ScalingLimited": "DesiredWithinRange"}
    assert [(e.reason, e.message.split(":")[0]) for e in posted] == [("Autoscaled", "Scaled up from 1 to 4 groups")]


def test_a_steady_world_writes_nothing_the_second_time(scaler):
    s, kube, posted = scaler(2)  # exactly at target for one group
    asyncio.run(s.tick("ns", "q"))
    first = list(kube.writes)
    assert [k for k, _, _ in first] == ["LeaderWorkerSet", "SGLangDeployment"]  # state annotation, status
    asyncio.run(s.tick("ns", "q"))
    assert kube.writes == first and not posted
    assert kube.get(lws_ref("ns", "q"))["spec"]["replicas"] == 1
    assert STATE_ANNOTATION in kube.get(lws_ref("ns", "q"))["metadata"]["annotations"]


def test_disabled_says_so_once_and_waits_the_idle_interval(scaler):
    s, kube, _ = scaler(7, enabled=False)
    assert asyncio.run(s.tick("ns", "q")) == AutoscalerSettings().idle_interval
    assert not kube.writes  # none of our conditions were there: nothing to take back
    kube.apply({"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment",
                "metadata": {"name": "q", "namespace": "ns"},
                "status": {"conditions": [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}]}},
               subresource="status")
    asyncio.run(s.tick("ns", "q"))
    conds = kube.get(sgld_ref("ns", "q"))["status"]["conditions"]
    assert [(c["type"], c["reason"]) for c in conds] == [("ScalingActive", "Disabled")]
    assert kube.get(lws_ref("ns", "q"))["spec"]["replicas"] == 1
