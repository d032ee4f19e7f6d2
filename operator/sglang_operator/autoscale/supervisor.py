"""Runs the autoscaler's tick (tick.py) for every SGLangDeployment kopf knows, each on its own
interval.

One asyncio task in the operator's loop over kopf's live index, rather than a kopf daemon or timer
per object: kopf puts a finalizer on every object that has one (kopf.on.daemon and kopf.on.timer:
requires_finalizer=True), and that finalizer would block deleting an SGLangDeployment (and its
namespace) whenever the operator is not running.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from ..kube.errors import describe
from .tick import Autoscaler

log = logging.getLogger("sglang_operator.autoscaler")
Key = tuple[str, str]  # namespace, name


@dataclass(frozen=True)
class View:
    """What the index keeps of an object: enough to skip API reads for the idle ones."""

    enabled: bool
    has_our_conditions: bool


async def supervise(scaler: Autoscaler, views: Callable[[], Mapping[Key, View]], *, step: float = 0.25,
                    clock: Callable[[], float] = time.monotonic) -> None:
    """Forever (until cancelled): start the pass of each object when it is due, never two at once
    for the same object; drop the metrics of objects that went away."""
    due: dict[Key, float] = {}
    seen: dict[Key, View] = {}
    running: dict[Key, asyncio.Task] = {}

    async def one(key: Key, view: View) -> None:
        namespace, name = key
        try:
            if view.enabled:
                delay = await scaler.tick(namespace, name)
            else:
                if view.has_our_conditions:
                    await scaler.disabled(namespace, name)
                scaler.forget(namespace, name)
                delay = scaler.settings.idle_interval
        except Exception as e:  # API server or network trouble: try again soon
            log.warning("autoscaler pass for %s/%s failed: %s", namespace, name, describe(e))
            delay = scaler.settings.idle_interval / 3
        due[key] = clock() + delay

    try:
        while True:
            current = dict(views())
            for key in [k for k in seen if k not in current]:
                due.pop(key, None)
                seen.pop(key, None)
                scaler.forget(*key)
            for key, view in current.items():
                task = running.get(key)
                if task is not None and not task.done():
                    continue
                running.pop(key, None)
                # A change (autoscaling turned on or off) is acted on now, not after the old interval.
                if clock() >= due.get(key, 0) or seen.get(key) != view:
                    seen[key] = view
                    running[key] = asyncio.create_task(one(key, view))
            await asyncio.sleep(step)
    finally:
        for task in running.values():
            task.cancel()
