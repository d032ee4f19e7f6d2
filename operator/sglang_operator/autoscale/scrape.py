"""Leader pods and their queue gauge: which pods to ask (pure), asking them (httpx), reading the
answer (prometheus-client's parser, pure).

A leader is the LeaderWorkerSet's pod with worker-index 0; LWS labels every pod of a set with the
set's name. Only ready, running, non-terminating leaders with an IP count: one that is starting or
going away holds no representative queue (the Service sends it nothing).
"""
from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ..api.autoscaling import KNOWN_QUEUE_METRICS
from ..api.lws import LWS_NAME_LABEL, LWS_WORKER_INDEX_LABEL
from ..kube.conditions import pod_ready
from ..render.engines import SERVER_PORT


def leader_pod_selector(lws_name: str) -> dict[str, str]:
    return {LWS_NAME_LABEL: lws_name, LWS_WORKER_INDEX_LABEL: "0"}


@dataclass(frozen=True)
class Leader:
    name: str
    url: str  # http://<podIP>:<port>/metrics


def _ready(pod: Mapping[str, Any]) -> bool:
    st = pod.get("status") or {}
    return pod_ready(pod) and st.get("phase") == "Running" and bool(st.get("podIP"))


def _port(pod: Mapping[str, Any]) -> int:
    """The container port named http (what the renderer declares), else the runtime's default."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == "http" and p.get("containerPort"):
                return int(p["containerPort"])
    return SERVER_PORT


def ready_leaders(pods: Iterable[Mapping[str, Any]]) -> list[Leader]:
    out = []
    for pod in pods:
        if _ready(pod):
            ip = pod["status"]["podIP"]
            host = f"[{ip}]" if ":" in ip else ip
            out.append(Leader(pod["metadata"]["name"], f"http://{host}:{_port(pod)}/metrics"))
    return sorted(out, key=lambda leader: leader.name)


def metric_names(metric: str) -> tuple[str, ...]:
    """Names to look for, preferred first: a known queue gauge also accepts the other engines' names
    (upstream SGLang exports sglang:num_queue_reqs only, vLLM its own)."""
    if metric in KNOWN_QUEUE_METRICS:
        return (metric, *(m for m in KNOWN_QUEUE_METRICS if m != metric))
    return (metric,)


def read_metric(text: str, metric: str) -> float | None:
    """The first name of metric_names(metric) present, summed over its label sets (one per model,
    or per data-parallel rank); None when absent or not a number."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name] = found.get(s.name, 0.0) + s.value
    for name in metric_names(metric):
        value = found.get(name)
        if value is not None and math.isfinite(value):
            return value
    return None


async def scrape_one(client: httpx.AsyncClient, leader: Leader, metric: str, gate: asyncio.Semaphore) -> float | None:
    """None for any failure (refused, timeout, HTTP error, unparsable, metric absent): the decision
    treats such a group conservatively, so the reason only matters for logs."""
    async with gate:
        try:
            r = await client.get(leader.url)
            r.raise_for_status()
            return read_metric(r.text, metric)
        except (httpx.HTTPError, ValueError):
            return None


async def scrape(leaders: list[Leader], metric: str, *, timeout: float = 2.0,
                 concurrency: int = 16) -> dict[str, float | None]:
    """Every leader at once (at most `concurrency` in flight), each within `timeout` seconds."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False) as client:
        values = await asyncio.gather(*(scrape_one(client, leader, metric, gate) for leader in leaders))
    return {leader.name: v for leader, v in zip(leaders, values)}
