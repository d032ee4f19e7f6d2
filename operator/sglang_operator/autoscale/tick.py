"""One autoscaler tick for one SGLangDeployment: read, scrape, decide (decide.py), write.

Writes, all as the `sglang-autoscaler` field manager with server-side apply:
- the LeaderWorkerSet's replicas plus the state annotation, only when either changes, with the
  resourceVersion it was computed from (a concurrent change makes it a 409: the next tick redoes it);
- the status fields it owns (queueDepth, lastScaleTime, ScalingActive/Limited), only when they
  change (status.desiredReplicas is the reconciler's: it follows the LWS);
- an Event per scale, with the numbers behind it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Mapping

from kubernetes.client.exceptions import ApiException

from ..api.lws import spec_replicas
from ..api.names import API_VERSION, KIND
from ..api.validate import InvalidSpec, parse_spec
from ..kube.client import Kube, lws_ref, sgld_ref
from ..kube.conditions import now, of_types
from ..kube.errors import ResourceTypeMissing
from ..kube.events import NORMAL, Event, Poster
from ..metrics import DESIRED, LEADERS, QUEUE, SCALES, SCRAPE_FAILURES
from ..render.labels import lws_name
from ..settings import AutoscalerSettings
from . import report
from .decide import Config, Decision, Observation, decide
from .handoff import autoscaler_apply
from .scrape import leader_pod_selector, ready_leaders, scrape
from .state import state_of

log = logging.getLogger("sglang_operator.autoscaler")
WRITE_ATTEMPTS = 3  # decide-and-write rounds when the LWS changes between our read and our write


def rollout_in_progress(lws: Mapping[str, Any]) -> bool:
    """LWS reports a rolling update, or fewer groups run the current template than exist."""
    st = lws.get("status") or {}
    if any(c.get("type") == "UpdateInProgress" and c.get("status") == "True" for c in st.get("conditions") or []):
        return True
    have, updated = st.get("replicas"), st.get("updatedReplicas")
    return bool(have) and updated is not None and updated < min(have, spec_replicas(lws))


class Autoscaler:
    """`kube` writes as the autoscaler's field manager (handoff.AUTOSCALER_MANAGER)."""

    def __init__(self, kube: Kube, *, post: Poster | None = None, settings: AutoscalerSettings | None = None,
                 clock: Callable[[], float] = time.time):
        self.kube, self.post, self.settings, self.clock = kube, post, settings or AutoscalerSettings(), clock

    async def _call(self, fn: Callable, *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)

    async def tick(self, namespace: str, name: str) -> float:
        """One pass; returns the seconds until the next one."""
        parent = await self._call(self.kube.get, sgld_ref(namespace, name))
        if parent is None or parent["metadata"].get("deletionTimestamp"):
            return self.settings.idle_interval
        try:
            spec = parse_spec(parent.get("spec") or {})
        except InvalidSpec:
            return self.settings.idle_interval  # the reconciler reports it (Degraded)
        a = spec.autoscaling
        if not a.enabled:
            await self._disabled(parent)
            return self.settings.idle_interval
        pods = await self._call(self.kube.list_pods, namespace, leader_pod_selector(lws_name(name)))
        leaders = ready_leaders(pods)
        values = await scrape(leaders, a.metric, timeout=self.settings.scrape_timeout,
                              concurrency=self.settings.concurrency)
        ok = [v for v in values.values() if v is not None]
        cfg = Config.from_spec(a, self.settings.tolerance)
        # The LWS is read after the scrape (which may take seconds), right before the decision and the
        # write, so the LWS controller's status updates rarely invalidate the resourceVersion.
        for attempt in range(WRITE_ATTEMPTS):
            try:
                lws = await self._call(self.kube.get, lws_ref(namespace, name))
            except ResourceTypeMissing:
                return self.settings.idle_interval  # no LWS API: the reconciler reports it (Degraded)
            if lws is None:
                return a.poll_interval_seconds  # the reconciler creates it
            current = spec_replicas(lws)
            obs = Observation(current, ok, max(0, current - len(ok)), rollout_in_progress(lws))
            before = state_of(lws)
            d = decide(cfg, obs, before, self.clock())
            if d.desired == current and d.state == before:
                break
            try:
                await self._call(self.kube.apply, autoscaler_apply(lws, d.desired, d.state.encode()))
                break
            except ApiException as e:
                if e.status != 409 or attempt == WRITE_ATTEMPTS - 1:
                    raise
                # The LWS changed since we read it: decide again on the fresh object.
        self._observe(namespace, name, d, len(leaders) - len(ok), len(ok))
        scaled = d.desired != current
        if scaled:
            SCALES.labels(namespace, name, "up" if d.desired > current else "down").inc()
            message = report.scale_message(a.metric, d, obs, cfg)
            log.info("%s/%s: %s", namespace, name, message)
            if self.post is not None:
                await self._call(self.post, parent, Event(NORMAL, "Autoscaled", message))
        await self._write_status(parent, report.conditions(a.metric, d, obs, cfg), queue=d.total, scaled=scaled)
        return a.poll_interval_seconds

    def _observe(self, namespace: str, name: str, d: Decision, failed: int, ok: int) -> None:
        DESIRED.labels(namespace, name).set(d.desired)
        LEADERS.labels(namespace, name).set(ok)
        if failed:
            SCRAPE_FAILURES.labels(namespace, name).inc(failed)
        if d.total is not None:
            QUEUE.labels(namespace, name).set(d.total)
        else:
            self._drop(QUEUE, namespace, name)

    async def disabled(self, namespace: str, name: str) -> None:
        """Autoscaling was turned off and our conditions are still in status: say so once."""
        parent = await self._call(self.kube.get, sgld_ref(namespace, name))
        if parent is not None:
            await self._disabled(parent)

    async def _disabled(self, parent: Mapping[str, Any]) -> None:
        meta = parent["metadata"]
        self.forget(meta["namespace"], meta["name"])
        stored = parent.get("status") or {}
        if of_types(stored, report.AUTOSCALER_CONDITIONS):
            await self._write_status(parent, report.disabled_conditions())

    async def _write_status(self, parent: Mapping[str, Any], conds: list[dict[str, Any]], **fields: Any) -> None:
        stored = parent.get("status") or {}
        status = report.status_fields(stored, conds, now(), **fields)
        if not report.status_changed(stored, status):
            return
        meta = parent["metadata"]
        await self._call(self.kube.apply, {"apiVersion": API_VERSION, "kind": KIND,
                                           "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                                           "status": status}, subresource="status")

    @staticmethod
    def _drop(metric: Any, namespace: str, name: str) -> None:
        try:
            metric.remove(namespace, name)
        except KeyError:
            pass

    def forget(self, namespace: str, name: str) -> None:
        """The deployment is gone or no longer autoscaled: drop its series."""
        for m in (QUEUE, DESIRED, LEADERS):
            self._drop(m, namespace, name)
