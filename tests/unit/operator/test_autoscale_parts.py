"""The autoscaler's parts around the decision: leader selection and metric parsing, concurrent
scraping (against real local HTTP servers), the persisted state, status/conditions/events text, the
replica hand-off body."""
from __future__ import annotations

import asyncio
import http.server
import threading
import time
from datetime import datetime, timezone

import pytest

from sglang_operator.autoscale import report
from sglang_operator.autoscale.decide import Behavior, Config, Decision, Observation, Policy
from sglang_operator.autoscale.handoff import AUTOSCALER_MANAGER, AutoscalerHandoff, autoscaler_apply, replicas_owners
from sglang_operator.autoscale.supervisor import View, supervise
from sglang_operator.autoscale.tick import rollout_in_progress
from sglang_operator.autoscale.scrape import (Leader, leader_pod_selector, metric_names, read_metric,
                                              ready_leaders, scrape)
from sglang_operator.autoscale.state import STATE_ANNOTATION, State, state_of
from sglang_operator.api.validate import parse_spec
from sglang_operator.settings import AutoscalerSettings

RUNTIME_METRICS = """\
# HELP sglang:num_requests_waiting Requests waiting in the queue
# TYPE sglang:num_requests_waiting gauge
sglang:num_requests_waiting{model_name="m"} 7.0
# HELP sglang:num_queue_reqs Requests waiting (upstream name)
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 7.0
# HELP sglang:prompt_tokens_total Prompt tokens
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="m"} 1234.0
"""
UPSTREAM = """\
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="a",dp_rank="0"} 3.0
sglang:num_queue_reqs{model_name="a",dp_rank="1"} 2.0
"""
VLLM = "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"x\"} 4\n"


def pod(name, ip="127.0.0.2", ready=True, phase="Running", deleting=False, port=None):
    p = {"metadata": {"name": name}, "spec": {"containers": [{"name": "runtime"}]},
         "status": {"phase": phase, "podIP": ip,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if port:
        p["spec"]["containers"][0]["ports"] = [{"name": "metrics-x", "containerPort": 1}, {"name": "http", "containerPort": port}]
    return p


def test_leaders_are_ready_running_live_pods_with_an_ip():
    pods = [pod("b-0", port=8080), pod("a-0", "10.0.0.5"), pod("c-0", ready=False), pod("d-0", phase="Pending"),
            pod("e-0", deleting=True), pod("f-0", ip=""), pod("g-0", "fd00::1")]
    assert ready_leaders(pods) == [Leader("a-0", "http://10.0.0.5:30000/metrics"),
                                   Leader("b-0", "http://127.0.0.2:8080/metrics"),
                                   Leader("g-0", "http://[fd00::1]:30000/metrics")]
    assert leader_pod_selector("llama") == {"leaderworkerset.sigs.k8s.io/name": "llama",
                                            "leaderworkerset.sigs.k8s.io/worker-index": "0"}


@pytest.mark.parametrize("text,metric,want", [
    (RUNTIME_METRICS, "sglang:num_requests_waiting", 7.0),
    (UPSTREAM, "sglang:num_requests_waiting", 5.0),   # upstream's name understood, summed over label sets
    (UPSTREAM, "sglang:num_queue_reqs", 5.0),
    (VLLM, "sglang:num_requests_waiting", 4.0),
    (RUNTIME_METRICS, "sglang:prompt_tokens_total", 1234.0),  # any other sample, by its exposed name
    (RUNTIME_METRICS, "custom:absent", None),
    (VLLM, "custom:absent", None),
    ("", "sglang:num_requests_waiting", None),
])
def test_read_metric(text, metric, want):
    assert read_metric(text, metric) == want


def test_metric_names_prefer_the_configured_one():
    assert metric_names("vllm:num_requests_waiting")[0] == "vllm:num_requests_waiting"
    assert set(metric_names("sglang:num_queue_reqs")) == {"sglang:num_queue_reqs", "sglang:num_requests_waiting",
                                                          "vllm:num_requests_waiting"}
    assert metric_names("my:gauge") == ("my:gauge",)


class _Slow(http.server.BaseHTTPRequestHandler):
    delay = 0.0
    body = RUNTIME_METRICS
    status = 200

    def do_GET(self):  # noqa: N802
        time.sleep(type(self).delay)
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(type(self).body.encode())

    def log_message(self, *a):
        pass


def _serve(handler):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_scrape_is_concurrent_and_failures_are_none():
    slow = type("Slow", (_Slow,), {"delay": 0.5})
    hung = type("Hung", (_Slow,), {"delay": 5})
    broken = type("Broken", (_Slow,), {"status": 500})
    garbage = type("Garbage", (_Slow,), {"body": "not { prometheus"})
    servers = [_serve(h) for h in (slow, slow, slow, slow, hung, broken, garbage)]
    try:
        leaders = [Leader(f"l{i}", f"http://127.0.0.1:{s.server_address[1]}/metrics") for i, s in enumerate(servers)]
        with __import__("socket").socket() as closed:
            closed.bind(("127.0.0.1", 0))
            leaders.append(Leader("refused", f"http://127.0.0.1:{closed.getsockname()[1]}/metrics"))
        t0 = time.monotonic()
        got = asyncio.run(scrape(leaders, "sglang:num_requests_waiting", timeout=1.0, concurrency=8))
        elapsed = time.monotonic() - t0
    finally:
        for s in servers:
            s.shutdown()
    assert got == {"l0": 7.0, "l1": 7.0, "l2": 7.0, "l3": 7.0, "l4": None, "l5": None, "l6": None, "refused": None}
    assert elapsed < 1.9  # four 0.5 s answers in parallel, the hung one cut at the 1 s timeout


def test_state_round_trip_and_windows():
    s = State().record(10.0, 3).record(20.0, 3).record(30.0, 5).scaled(30.0, 2).scaled(31.0, 0)
    assert s.recommendations == ((10.0, 3), (30.0, 5)) and s.events == ((30.0, 2),)
    assert State.decode(s.encode()) == s
    assert s.recommendations_within(45.0, 10) == [5]
    assert s.recommendations_within(39.0, 10) == [3, 5]  # 3 was in force until t=30 > 29
    assert s.changes_within(50.0, 30) == (2, 0) and s.changes_within(61.0, 30) == (0, 0)
    assert s.pruned(100.0, 10, 10) == State(((30.0, 5),), ())
    for bad in (None, "", "{", '{"v": 99}', '{"v": 1, "rec": [["x", 1]]}', "[]"):
        assert State.decode(bad) == State()
    lws = {"metadata": {"annotations": {STATE_ANNOTATION: s.encode()}}}
    assert state_of(lws) == s and state_of(None) == State()


CFG = Config(1, 4, 8, Behavior(0, (Policy("Pods", 4, 60),)), Behavior(60, (Policy("Pods", 1, 60),)))


def test_conditions_and_event_text():
    o = Observation(1, [30.0], 1)
    d = Decision(4, 5, 30.0, "TooManyReplicas", State())
    active, limited = report.conditions("sglang:num_requests_waiting", d, o, CFG)
    assert active["status"] == "True" and active["reason"] == "ValidMetricFound"
    assert "sglang:num_requests_waiting = 30 over 1 leader(s); 1 without a value, target 8" in active["message"]
    assert (limited["status"], limited["reason"]) == ("True", "TooManyReplicas")
    assert "maxReplicas (4)" in limited["message"]
    msg = report.scale_message("sglang:num_requests_waiting", d, o, CFG)
    assert msg.startswith("Scaled up from 1 to 4 groups: sglang:num_requests_waiting = 30") and "recommendation 5" in msg
    blind = report.conditions("m", Decision(2, None, None, None, State()), Observation(2, [], 2), CFG)
    assert (blind[0]["status"], blind[0]["reason"], blind[1]["reason"]) == ("False", "NoMetrics", "DesiredWithinRange")


def test_status_fields_keep_times_and_compare_only_what_they_own():
    t0, t1 = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)
    conds = report.conditions("m", Decision(2, 2, 9.4, None, State()), Observation(1, [9.4]), CFG)
    first = report.status_fields(None, conds, t0, queue=9.4, scaled=True)
    assert first["queueDepth"] == 9 and first["lastScaleTime"] == "2026-01-01T00:00:00Z"
    stored = {**first, "replicas": 1, "conditions": first["conditions"] + [{"type": "Ready", "status": "True"}]}
    again = report.status_fields(stored, conds, t1, queue=9.4, scaled=False)
    assert again == first and not report.status_changed(stored, again)  # times kept, nothing to write
    assert report.status_changed(stored, report.status_fields(stored, conds, t1, queue=3, scaled=False))
    off = report.status_fields({**stored, "desiredReplicas": 5}, report.disabled_conditions(), t1)
    assert set(off) == {"conditions"} and report.status_changed(stored, off)
    after = {"replicas": 1, "desiredReplicas": 5, "conditions": off["conditions"] + [{"type": "Ready", "status": "True"}]}
    assert not report.status_changed(after, off)  # the reconciler's fields and conditions are not compared
    assert "desiredReplicas" not in first  # the reconciler's only


def test_hand_off_body_and_owners():
    lws = {"metadata": {"name": "x", "namespace": "ns", "resourceVersion": "42",
                        "annotations": {STATE_ANNOTATION: "{}"},
                        "managedFields": [
                            {"manager": "sglang-operator", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:startupPolicy": {}}}},
                            {"manager": AUTOSCALER_MANAGER, "fieldsV1": {"f:metadata": {}}},
                            {"manager": "kubectl", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
           "spec": {"replicas": 3}}
    assert replicas_owners(lws) == {"sglang-operator", "kubectl"}
    body = autoscaler_apply(lws, 5, "{}")
    assert body["metadata"]["resourceVersion"] == "42"  # a precondition: never undo a newer write
    assert body["spec"] == {"replicas": 5} and body["metadata"]["annotations"] == {STATE_ANNOTATION: "{}"}
    on = parse_spec({"model": {"path": "/m"}, "autoscaling": {"enabled": True, "maxReplicas": 3}})
    off = parse_spec({"model": {"path": "/m"}})
    assert AutoscalerHandoff.omit(on) == {"LeaderWorkerSet": ("spec.replicas",)} and AutoscalerHandoff.omit(off) == {}


@pytest.mark.parametrize("status,replicas,want", [
    ({}, 2, False),
    ({"replicas": 2, "updatedReplicas": 2}, 2, False),
    ({"replicas": 3, "updatedReplicas": 1}, 3, True),
    ({"replicas": 3, "updatedReplicas": 1}, 1, False),  # scaling down to the one updated group
    ({"conditions": [{"type": "UpdateInProgress", "status": "True"}]}, 2, True),
])
def test_rollout_in_progress(status, replicas, want):
    assert rollout_in_progress({"spec": {"replicas": replicas}, "status": status}) is want


def test_settings_from_env():
    s = AutoscalerSettings.from_env({"SGLANG_OPERATOR_AUTOSCALER_TOLERANCE": "0", "SGLANG_OPERATOR_AUTOSCALER_SCRAPE_TIMEOUT": "0.5"})
    assert (s.tolerance, s.scrape_timeout, s.concurrency) == (0.0, 0.5, 16)


class _Recorder:
    """Stands in for Autoscaler in the scheduling test: records calls, answers intervals."""

    def __init__(self):
        self.settings = AutoscalerSettings(idle_interval=0.3)
        self.calls: list[tuple[str, str]] = []

    async def tick(self, namespace, name):
        self.calls.append(("tick", name))
        if name == "broken":
            raise RuntimeError("API server away")
        return 0.1

    async def disabled(self, namespace, name):
        self.calls.append(("disabled", name))

    def forget(self, namespace, name):
        self.calls.append(("forget", name))


def test_supervise_runs_each_object_on_its_interval_and_reacts_to_changes():
    views = {("ns", "on"): View(True, True), ("ns", "off"): View(False, True), ("ns", "broken"): View(True, False)}
    rec = _Recorder()

    async def scenario():
        task = asyncio.create_task(supervise(rec, lambda: views, step=0.01))
        await asyncio.sleep(0.55)
        first = list(rec.calls)
        views[("ns", "off")] = View(True, True)  # turned on: acted on at once
        views.pop(("ns", "on"))  # deleted
        rec.calls.clear()
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return first, list(rec.calls)

    first, after = asyncio.run(scenario())
    assert 2 <= first.count(("tick", "on")) <= 7  # every 0.1 s over 0.55 s (slack for a busy machine)
    assert first.count(("disabled", "off")) == 2  # every idle interval (0.3 s)
    assert 2 <= first.count(("tick", "broken")) <= 7  # after a failure: again in idle/3 = 0.1 s
    assert ("tick", "off") in after and ("forget", "on") in after
