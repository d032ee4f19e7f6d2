"""kopf registrations of the autoscaler (imported by the CLI): an index of what each
SGLangDeployment asks for, and one supervising task started with the operator (schedule.py).

Operator restarts and leader-election hand-overs lose nothing: the windows live on the
LeaderWorkerSet (state.py).
"""
from __future__ import annotations

import asyncio
from typing import Any

import kopf

from ..api.names import GROUP, PLURAL, VERSION
from ..reconcile.events import api_poster
from ..reconcile.kube import Kube, load_api_client
from .handoff import AUTOSCALER_MANAGER
from .loop import Autoscaler, Settings
from .report import OUR_CONDITIONS
from .schedule import View, supervise


@kopf.index(GROUP, VERSION, PLURAL)
def autoscaling_views(namespace: str, name: str, spec: kopf.Spec, status: kopf.Status,
                      **_: Any) -> dict[tuple[str, str], View]:
    enabled = bool((spec.get("autoscaling") or {}).get("enabled"))
    ours = any(c.get("type") in OUR_CONDITIONS for c in status.get("conditions") or [])
    return {(namespace, name): View(enabled, ours)}


def _views(index: kopf.Index) -> dict[tuple[str, str], View]:
    return {key: view for key, store in index.items() for view in store}


@kopf.on.startup()
async def start_autoscaler(memo: kopf.Memo, autoscaling_views: kopf.Index, **_: Any) -> None:
    kube = Kube(load_api_client(), AUTOSCALER_MANAGER)
    scaler = Autoscaler(kube, post=api_poster(kube), settings=Settings.from_env())
    memo.autoscaler = asyncio.create_task(supervise(scaler, lambda: _views(autoscaling_views)))


@kopf.on.cleanup()
async def stop_autoscaler(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task | None = memo.get("autoscaler")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
