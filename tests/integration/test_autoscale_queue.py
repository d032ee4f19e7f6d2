"""The autoscaler end to end: the real control plane, the operator as a process, real radix_runtime
servers whose queues a load generator fills.

No kubelet or LWS controller runs here, so the test plays both: for each group the LeaderWorkerSet
asks for it creates the leader Pod (LWS labels, container port `http`) and marks it Running/Ready
with a podIP on loopback (127.0.X.g) where a real server listens; it deletes the pods of groups the
set no longer has. Every replicas value the LWS ever takes is recorded through a watch.
"""
from __future__ import annotations

import asyncio
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from radix_runtime.tiny_model import write_tiny_model
from sglang_operator.autoscale.handoff import AUTOSCALER_MANAGER, replicas_owners
from sglang_operator.autoscale.state import STATE_ANNOTATION

from tests.support.kube import Api, LWS, wait_for_api
from tests.support.operator import REPO, Operator, example
from tests.support.process import terminate

pytestmark = pytest.mark.cluster

GROUPS = 3  # maxReplicas: one real server per possible group
POLL, UP_WINDOW, DOWN_WINDOW = 1, 2, 15  # seconds; spec.autoscaling, kept short for the test
TARGET = 2  # waiting requests per group
METRIC = "sglang:num_requests_waiting"


class RuntimeServer:
    """`python -m radix_runtime.launch_server` on host:port, one request running at a time so
    that everything else queues."""

    def __init__(self, model: Path, host: str, port: int, log: Path):
        self.host, self.port, self.url = host, port, f"http://{host}:{port}"
        self._log = open(log, "wb")
        self.log_path = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radix_runtime.launch_server", "--model-path", str(model), "--host", host,
             "--port", str(port), "--max-running-requests", "1"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server {self.url} exited:\n{self.log_path.read_text()[-3000:]}"
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server {self.url} not ready:\n{self.log_path.read_text()[-3000:]}")

    def waiting(self) -> float:
        text = httpx.get(self.url + "/metrics", timeout=2).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(METRIC + "{"))

    def stop(self) -> None:
        terminate(self.proc, 20)
        self._log.close()


def _loopback_addresses(n: int) -> tuple[list[str], int]:
    """n addresses 127.X.Y.g sharing one port that is free on all of them (the pods' container port)."""
    for _ in range(50):
        base = f"127.{random.randint(2, 250)}.{random.randint(2, 250)}"
        hosts = [f"{base}.{g + 1}" for g in range(n)]
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for h in hosts[1:]:
                with socket.socket() as s:
                    s.bind((h, port))
            return hosts, port
        except OSError:
            continue
    raise AssertionError("no common free port on loopback")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    model = Path(write_tiny_model(str(tmp_path_factory.mktemp("tiny-llama")), arch="llama", seed=0))
    hosts, port = _loopback_addresses(GROUPS)
    logs = tmp_path_factory.mktemp("runtime-logs")
    started = [RuntimeServer(model, h, port, logs / f"{h}.log") for h in hosts]
    try:
        deadline = time.monotonic() + 120
        for s in started:
            s.wait_ready(deadline)
        yield started
    finally:
        for s in started:
            s.stop()


class FakeLws:
    """Stands in for the LWS controller and kubelet: leader pods follow the set's replicas."""

    def __init__(self, api: Api, name: str, servers: list[RuntimeServer]):
        self.api, self.name, self.servers = api, name, servers
        self.history: list[tuple[float, int]] = []  # every replicas value the LWS took, with when
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, daemon=True),
                         threading.Thread(target=self._pods, daemon=True)]
        for t in self._threads:
            t.start()

    def _watch(self) -> None:
        custom = client.CustomObjectsApi(self.api.api_client)
        while not self._stop.is_set():
            try:
                for ev in watch.Watch().stream(custom.list_namespaced_custom_object, *LWS[:2], self.api.ns, LWS[2],
                                               field_selector=f"metadata.name={self.name}", timeout_seconds=2):
                    replicas = ev["object"].get("spec", {}).get("replicas")
                    if replicas is not None and (not self.history or self.history[-1][1] != replicas):
                        self.history.append((time.time(), replicas))
            except ApiException:
                time.sleep(0.2)

    def replicas(self) -> int | None:
        return self.history[-1][1] if self.history else None

    def pod_name(self, group: int) -> str:
        return f"{self.name}-{group}"

    def _pods(self) -> None:
        core = self.api.core
        have: set[int] = set()
        while not self._stop.is_set():
            want = self.replicas()
            if want is not None:
                for g in sorted(set(range(min(want, len(self.servers)))) - have):
                    self._create(core, g)
                    have.add(g)
                for g in sorted(have - set(range(want))):
                    core.delete_namespaced_pod(self.pod_name(g), self.api.ns, grace_period_seconds=0)
                    have.discard(g)
            time.sleep(0.1)

    def _create(self, core: client.CoreV1Api, g: int) -> None:
        srv = self.servers[g]
        labels = {"leaderworkerset.sigs.k8s.io/name": self.name, "leaderworkerset.sigs.k8s.io/worker-index": "0",
                  "leaderworkerset.sigs.k8s.io/group-index": str(g), "sglangfleet.dev/deployment": self.name}
        core.create_namespaced_pod(self.api.ns, {
            "metadata": {"name": self.pod_name(g), "labels": labels},
            "spec": {"containers": [{"name": "runtime", "image": "radix-runtime:test",
                                     "ports": [{"name": "http", "containerPort": srv.port}]}]}})
        core.patch_namespaced_pod_status(self.pod_name(g), self.api.ns, {"status": {
            "phase": "Running", "podIP": srv.host, "podIPs": [{"ip": srv.host}],
            "conditions": [{"type": "Ready", "status": "True"}]}})

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)


class Load:
    """`workers` clients sending long generations back to back to the current leaders (like the
    Service would, round robin) until stopped; stopping cancels them (the servers abort them)."""

    def __init__(self, lws: FakeLws, workers: int):
        self.lws, self.workers = lws, workers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),), daemon=True)
        self._stopped: asyncio.Event | None = None
        self._thread.start()

    async def _run(self) -> None:
        self._stopped = asyncio.Event()
        async with httpx.AsyncClient(timeout=120) as c:
            async def worker(i: int) -> None:
                while True:
                    servers = self.lws.servers[:max(1, min(self.lws.replicas() or 1, len(self.lws.servers)))]
                    try:
                        await c.post(servers[i % len(servers)].url + "/generate", json={
                            "text": f"load {i}", "sampling_params": {"max_new_tokens": 1500, "ignore_eos": True}})
                    except httpx.HTTPError:
                        await asyncio.sleep(0.1)
            tasks = [asyncio.create_task(worker(i)) for i in range(self.workers)]
            await self._stopped.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)


def autoscaled(name: str, **autoscaling) -> dict:
    m = example(name)
    m["spec"]["parallelism"] = {"dp": 1}
    m["spec"]["autoscaling"] = {
        "enabled": True, "minReplicas": 1, "maxReplicas": GROUPS, "metric": METRIC, "targetPerReplica": TARGET,
        "pollIntervalSeconds": POLL,
        "scaleUp": {"stabilizationWindowSeconds": UP_WINDOW, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}]},
        "scaleDown": {"stabilizationWindowSeconds": DOWN_WINDOW,
                      "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]},
        **autoscaling}
    return m


def finish(op: Operator, api: Api) -> None:
    """Delete the deployments (garbage collection takes their children), then stop the operator."""
    try:
        api.delete_all_sglds()
    finally:
        op.stop()


def condition(api: Api, name: str, type_: str) -> dict:
    return api.condition(name, type_) or {}


def test_queue_scales_groups_up_and_down_across_an_operator_restart(cluster, api, servers, tmp_path):
    op = Operator(cluster.kubeconfig, tmp_path, "-n", api.ns, name="op1")
    fake = None
    load = None
    try:
        api.create(autoscaled("q"))
        wait_for_api(lambda: api.lws_or_none("q"), timeout=20, what="the LeaderWorkerSet")
        fake = FakeLws(api, "q", servers)
        # The autoscaler owns the replicas from the start (the operator's apply leaves them out).
        owners = wait_for_api(lambda: (o := replicas_owners(api.lws("q"))) and AUTOSCALER_MANAGER in o and o,
                          timeout=15, what="the autoscaler to own spec.replicas")
        assert owners == {AUTOSCALER_MANAGER}, owners
        assert api.lws("q")["spec"]["replicas"] == 1
        idle = wait_for_api(lambda: condition(api, "q", "ScalingActive").get("status") == "True"
                        and api.sgld("q")["status"], timeout=20, what="ScalingActive=True while idle")
        assert idle["queueDepth"] == 0 and idle["desiredReplicas"] == 1
        assert condition(api, "q", "ScalingLimited")["reason"] == "TooFewReplicas"

        # Load: the queue of the one leader fills; after the up window the groups go to max.
        t_load = time.time()
        # 12 clients, one running per server: >= 9 waiting over 3 groups, so the recommendation stays
        # at max until the load stops even when a scrape lands between two requests of a client.
        load = Load(fake, workers=12)
        wait_for_api(lambda: fake.replicas() == GROUPS, timeout=POLL + UP_WINDOW + 8, interval=0.1,
                 what="scale-up to maxReplicas")
        t_up = next(t for t, r in fake.history if r > 1)
        assert UP_WINDOW <= t_up - t_load <= POLL + UP_WINDOW + 4, (t_up - t_load, fake.history)
        rising = [r for _, r in fake.history]
        assert rising == sorted(rising), fake.history
        # lastScaleTime is the autoscaler's; desiredReplicas the reconciler's, after the LWS event.
        st = wait_for_api(lambda: (s := api.sgld("q")["status"]).get("lastScaleTime")
                          and s.get("desiredReplicas") == GROUPS and s, what="status after scale")
        assert st["queueDepth"] > 0
        up = wait_for_api(lambda: [e["message"] for e in api.events("q") if e["reason"] == "Autoscaled"], what="the scale event")
        # The event carries the numbers that caused the scale, and they justify it.
        m = re.match(rf"Scaled up from 1 to (\d+) groups?: {METRIC} = ([\d.]+) over 1 leader\(s\)", up[0])
        assert m, up
        assert math.ceil(float(m[2]) / TARGET) >= int(m[1]) > 1, up
        ours = {"namespace": api.ns, "deployment": "q"}
        assert op.metric_sum("sglang_operator_autoscaler_desired_replicas", **ours) == GROUPS
        assert op.metric_sum("sglang_operator_autoscaler_queue_depth", **ours) > 0
        # The reconciler saw all of this (LWS events) and left the replicas alone.
        assert api.lws("q")["spec"]["replicas"] == GROUPS
        assert "sglang-operator" not in replicas_owners(api.lws("q"))

        # Stop the load. In the middle of the down window, kill the operator and start another.
        wait_for_api(lambda: len(api.core.list_namespaced_pod(api.ns).items) == GROUPS, what="the new leaders")
        time.sleep(POLL * 2)  # every leader scraped at least once under load
        assert fake.replicas() == GROUPS, fake.history
        load.stop()
        t_stop = time.time()
        wait_for_api(lambda: sum(s.waiting() for s in servers) == 0, timeout=10, what="the queues to drain")
        assert STATE_ANNOTATION in api.lws("q")["metadata"]["annotations"]
        time.sleep(DOWN_WINDOW / 3)
        op.kill()
        op = Operator(cluster.kubeconfig, tmp_path, "-n", api.ns, name="op2")
        wait_for_api(lambda: fake.replicas() == 1, timeout=DOWN_WINDOW + 15, interval=0.1, what="scale-down to minReplicas")
        t_down = next(t for t, r in fake.history if t > t_stop and r < GROUPS)
        # No scale-down before the down window ran out, restart or not; and not long after it.
        assert DOWN_WINDOW <= t_down - t_stop <= DOWN_WINDOW + 8, (t_down - t_stop, fake.history)
        assert all(1 <= r <= GROUPS for _, r in fake.history), fake.history
        down = wait_for_api(lambda: [e for e in api.events("q") if e["message"].startswith("Scaled down")],
                        what="the scale-down event")
        assert f"Scaled down from {GROUPS} to 1 group: {METRIC} = 0 over" in down[0]["message"], down
        st = wait_for_api(lambda: (s := api.sgld("q")["status"]).get("desiredReplicas") == 1 and s, what="status after scale-down")
        assert st["queueDepth"] == 0
        assert op.alive(), op.log_tail()
    finally:
        if load is not None and load._stopped is not None and not load._stopped.is_set():
            load.stop()
        if fake is not None:
            fake.stop()
        finish(op, api)


def test_turning_autoscaling_off_hands_replicas_back_to_dp_and_on_again_keeps_them(cluster, api, tmp_path):
    op = Operator(cluster.kubeconfig, tmp_path, "-n", api.ns, name="op")
    try:
        api.create(autoscaled("h", minReplicas=2, maxReplicas=4))
        # Initial size: dp (1) within the bounds, owned by the autoscaler alone.
        lws = wait_for_api(lambda: (l := api.lws_or_none("h")) and replicas_owners(l) == {AUTOSCALER_MANAGER} and l,
                       timeout=20, what="the autoscaler to own the replicas")
        assert lws["spec"]["replicas"] == 2
        # The autoscaler adds no finalizer: deleting a deployment never waits for the operator.
        assert not api.sgld("h")["metadata"].get("finalizers")
        # No leader answers here: the autoscaler holds (never a reason to scale down) and says why.
        active = wait_for_api(lambda: condition(api, "h", "ScalingActive").get("reason") == "NoMetrics" and
                          condition(api, "h", "ScalingActive"), timeout=15, what="NoMetrics")
        assert active["status"] == "False"

        api.patch_sgld("h", {"spec": {"autoscaling": {"enabled": False}, "parallelism": {"dp": 3}}})
        wait_for_api(lambda: api.lws("h")["spec"]["replicas"] == 3 and "sglang-operator" in replicas_owners(api.lws("h")),
                 timeout=15, what="dp to drive the replicas again")
        wait_for_api(lambda: condition(api, "h", "ScalingActive").get("reason") == "Disabled", timeout=30,
                 what="ScalingActive=False/Disabled")
        # With the autoscaler off, the scale subresource drives dp (kubectl scale, HPA, KEDA).
        out = cluster.kubectl("-n", api.ns, "scale", "sgld/h", "--replicas=4").stdout
        assert "scaled" in out, out
        wait_for_api(lambda: api.lws("h")["spec"]["replicas"] == 4, timeout=15, what="kubectl scale to reach the LWS")

        # On again: the autoscaler takes the live value over (no reset to LWS's default of 1).
        api.patch_sgld("h", {"spec": {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 5}}})
        wait_for_api(lambda: replicas_owners(api.lws("h")) == {AUTOSCALER_MANAGER}, timeout=15,
                 what="the autoscaler to own the replicas again")
        seen = [api.lws("h")["spec"]["replicas"] for _ in range(int(3 / 0.2)) if not time.sleep(0.2)]
        assert set(seen) == {4}, seen
        assert op.alive(), op.log_tail()
    finally:
        finish(op, api)
