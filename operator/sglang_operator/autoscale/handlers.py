"""kopf registrations of the autoscaler: one daemon per SGLangDeployment (imported by the CLI).

A daemon rather than a timer: the poll interval is per object (spec.autoscaling.pollIntervalSeconds)
and may change while it runs. The daemon of a deployment without autoscaling only idles. Operator
restarts and leader-election hand-overs lose nothing: the windows live on the LeaderWorkerSet.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import kopf

from ..api.names import GROUP, PLURAL, VERSION
from ..reconcile.events import Event
from ..reconcile.kube import Kube, describe, load_api_client
from .handoff import AUTOSCALER_MANAGER
from .loop import Autoscaler, Settings


def _post(parent: Mapping[str, Any], e: Event) -> None:
    kopf.event(dict(parent), type=e.type, reason=e.reason, message=e.message)


@kopf.on.startup()
def start_autoscaler(memo: kopf.Memo, **_: Any) -> None:
    memo.autoscaler = Autoscaler(Kube(load_api_client(), AUTOSCALER_MANAGER), post=_post, settings=Settings.from_env())


@kopf.daemon(GROUP, VERSION, PLURAL, id="autoscaler", cancellation_timeout=10)
async def autoscaler(stopped: kopf.DaemonStopped, namespace: str, name: str, body: kopf.Body, memo: kopf.Memo,
                     logger: logging.Logger, **_: Any) -> None:
    scaler: Autoscaler = memo.autoscaler
    try:
        while not stopped:
            try:
                # `body` is kopf's live view of the object: no read needed to see autoscaling is off.
                if (body.get("spec", {}).get("autoscaling") or {}).get("enabled"):
                    delay = await scaler.tick(namespace, name)
                else:
                    delay = await scaler.idle(body)
            except Exception as e:  # API server or network trouble: the next tick tries again
                logger.warning("autoscaler tick failed: %s", describe(e))
                delay = scaler.settings.idle_interval / 3
            await stopped.wait(delay)
    finally:
        scaler.forget(namespace, name)
