"""spec.router on the real node: SMG (the image `make images` builds from its PyPI wheel, laid out
like the published one) in front of two groups run by the helm-installed operator. Chat goes through
`<name>-router`; then one group restarts under load, and we measure how long its dead leader stays
in the router, what the clients see meanwhile, and that every request afterwards is served by a
live leader (counted on the leaders themselves)."""
from __future__ import annotations

import threading
import time

import httpx
from kubernetes import client

from tests.support import fleet
from tests.support.load import Load, e2e_fleet
from tests.support.waiting import wait_for

GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"


def router_url(bed, ns: str, name: str) -> str:
    svc = client.CoreV1Api(bed.api_client()).read_namespaced_service(f"{name}-router", ns)
    return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}"


def router_workers(url: str) -> dict[str, bool]:
    """The router's worker list: url -> healthy."""
    return {w["url"]: bool(w.get("is_healthy")) for w in httpx.get(f"{url}/workers", timeout=5).json()["workers"]}


def leaders(bed, ns: str, name: str) -> dict[str, client.V1Pod]:
    return {p.metadata.labels[GROUP_INDEX]: p for p in fleet.lws_pods(bed, ns, name)
            if p.metadata.labels.get("leaderworkerset.sigs.k8s.io/worker-index") == "0"}


def served(pod_ip: str) -> float:
    """Requests a leader finished (the count of its end-to-end latency histogram)."""
    text = httpx.get(f"http://{pod_ip}:30000/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sglang:e2e_request_latency_seconds_count"))


class Watch:
    """Polls the router's worker list every 0.2 s: (monotonic time, {url: healthy})."""

    def __init__(self, url: str):
        self.url, self.seen = url, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Watch":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.seen.append((time.monotonic(), router_workers(self.url)))
            except (httpx.HTTPError, ValueError, KeyError):
                pass

    def first(self, after: float, pred) -> float | None:
        return next((t for t, ws in self.seen if t >= after and pred(ws)), None)


def test_router_serves_chat_and_a_restarted_groups_dead_leader_gets_no_request(bed, models_dir, ns):
    doc = e2e_fleet(bed, models_dir, "routed", dp=2)
    # round_robin: every worker gets every other request, so a dead one listed as healthy would show
    doc["spec"]["router"] = {"enabled": True, "image": bed.images["smg"], "policy": "round_robin"}
    fleet.apply(bed, ns, doc)
    fleet.wait_ready(bed, ns, "routed", timeout=420)
    wait_for(lambda: fleet.condition(fleet.sgld(bed, ns, "routed"), "RouterReady").get("status") == "True",
             timeout=180, interval=1, what="RouterReady")
    cols = fleet.printer_columns(fleet.get_sgld(bed, ns, "routed"))[0]
    assert cols["ROUTER"] == "Routing", cols
    url = router_url(bed, ns, "routed")
    before = leaders(bed, ns, "routed")
    live = {f"http://{p.status.pod_ip}:30000" for p in before.values()}
    wait_for(lambda: router_workers(url) == dict.fromkeys(live, True), timeout=60, interval=0.5,
             what="both leaders healthy in the router")
    answer = fleet.chat(url, "Hello through the router")
    assert answer["usage"]["completion_tokens"] > 0 and answer["choices"][0]["finish_reason"], answer

    victim = before["1"]
    dead = f"http://{victim.status.pod_ip}:30000"
    # SMG routes /generate by model name once workers come from discovery: clients must name it
    with Watch(url) as watch, Load(url, clients=2, model="tiny") as load:
        time.sleep(3)
        t_kill = time.monotonic()
        client.CoreV1Api(bed.api_client()).delete_namespaced_pod(victim.metadata.name, ns, grace_period_seconds=0)
        wait_for(lambda: (now := leaders(bed, ns, "routed").get("1")) is not None
                 and now.metadata.uid != victim.metadata.uid and now.status.pod_ip
                 and any(c.type == "Ready" and c.status == "True" for c in now.status.conditions or []),
                 timeout=300, interval=0.5, what="group 1's new leader to be Ready")
        after = leaders(bed, ns, "routed")
        live = {f"http://{p.status.pod_ip}:30000" for p in after.values()}
        assert dead not in live, "the new leader reused the dead one's IP: the measurement below cannot tell them apart"
        wait_for(lambda: router_workers(url) == dict.fromkeys(live, True), timeout=180, interval=0.5,
                 what="the router to list the two live leaders only")
        time.sleep(2)
    t_unhealthy = watch.first(t_kill, lambda ws: not ws.get(dead, False))
    t_removed = watch.first(t_kill, lambda ws: dead not in ws)
    t_new = watch.first(t_kill, lambda ws: ws == dict.fromkeys(live, True))
    assert None not in (t_unhealthy, t_removed, t_new), watch.seen[-3:]
    late = [why for t, why in load.failures if t > t_unhealthy]
    print(f"group restart behind the router: sent {load.sent}, failed {len(load.failures)} "
          f"(after the dead leader was marked unhealthy: {len(late)}); dead leader unhealthy after "
          f"{t_unhealthy - t_kill:.1f}s, removed from the router after {t_removed - t_kill:.1f}s; "
          f"new leader routed after {t_new - t_kill:.1f}s")
    assert load.ok > 10, load.failures[:5]
    assert late == [], late[:5]  # once SMG's health check saw it dead, no request was sent its way

    # Every request from now on is served by a live leader: the leaders' own counters add up.
    ips = [p.status.pod_ip for p in after.values()]

    def settled() -> dict[str, float]:
        """The leaders' counts once the load's last requests are counted (a request is counted just
        after its response is sent)."""
        prev: dict[str, float] = {}
        while (now := {ip: served(ip) for ip in ips}) != prev:
            prev = now
            time.sleep(1)
        return now

    counts = settled()
    for i in range(20):
        r = httpx.post(f"{url}/generate", timeout=60, json={
            "model": "tiny", "input_ids": fleet.PROMPT_IDS, "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
        assert r.status_code == 200, (i, r.text)
    delta = {ip: n - counts[ip] for ip, n in settled().items()}
    assert sum(delta.values()) == 20 and all(d > 0 for d in delta.values()), delta
