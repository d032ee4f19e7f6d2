"""kopf registrations (the wiring): every reconcile trigger ends in Reconciler.reconcile, under one
failure policy (reconcile/retry.py); the autoscaler runs as one supervising task and hands the
reconciler its side of LWS spec.replicas (autoscale/handoff.py). Settings come from the CLI in
kopf's memo (memo.settings).

Reconcile triggers:
- the SGLangDeployment's own events, level-based: every object once when the operator starts (the
  initial listing), then whenever its spec, labels, annotations or deletion change (our own status
  writes do not count; reconcile/triggers.py). No kopf change-detecting handlers (on.create/update/
  resume): those keep a diff base in an annotation, written by one more PATCH per object, and under
  load kopf read our status write's event (older than that PATCH) as a never-handled object and ran
  the create handler again for most of 1,000 new objects. Nothing adds a finalizer: garbage
  collection removes the children;
- its children (LeaderWorkerSet, Service, PodDisruptionBudget; with spec.router its Deployment and
  worker ConfigMap), selected by a controller owner
  reference to an SGLangDeployment: an edit or a deletion is repaired within seconds, and LWS status
  changes (and autoscaler scales) flow into our status;
- the pods of its LeaderWorkerSet, selected by our deployment label (render/labels.py puts it on
  every pod; pods are owned by LWS's StatefulSets, not by us): readiness flips land in status.Ready
  within seconds (status.py counts ready groups from the pods). kopf filters on the label's
  presence, so other pods are never handled;
- child and pod events that change nothing a pass reads (status churn before a pod turns Ready,
  PDB status) are dropped before they cost a pass (reconcile/triggers.py);
- the LeaderWorkerSet CRD becoming established: objects waiting for it (Degraded, retrying with
  backoff) are reconciled at once instead of at their next retry;
- a slow resync of every known object (reconcile/resync.py), a safety net for events missed while
  the API server was unreachable.

Operator restarts and leader-election hand-overs lose nothing of the autoscaler: its windows live on
the LeaderWorkerSet (autoscale/state.py).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping

import kopf

from .api.lws import LWS_CRD, LWS_GROUP, LWS_PLURAL, LWS_VERSION
from .api.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from .autoscale.handoff import AUTOSCALER_MANAGER, AutoscalerHandoff
from .autoscale.report import AUTOSCALER_CONDITIONS
from .autoscale.supervisor import View, supervise
from .autoscale.tick import Autoscaler
from .kube.client import Kube, load_api_client
from .kube.events import api_poster
from .metrics import EVENTS_SKIPPED, LEADER
from .reconcile import resync
from .reconcile.reconciler import Reconciler
from .reconcile.retry import Retrier
from .reconcile.triggers import Seen
from .render.labels import DEPLOYMENT_LABEL
from .settings import Settings

FIELD_MANAGER = "sglang-operator"

log = logging.getLogger("sglang_operator.handlers")


def owner_name(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("apiVersion") == API_VERSION and ref.get("kind") == KIND:
            return ref.get("name")
    return None


def _owned(meta: Mapping[str, Any], **_: Any) -> bool:
    return owner_name(meta) is not None


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)  # the same credentials as our own client (kube.client.load_api_client)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, deployments: kopf.Index, **_: Any) -> None:
    ours: Settings = memo.get("settings") or Settings()
    # kopf's bookkeeping, should a change-detecting handler ever be added: progress under
    # status.kopf (the CRD keeps it), no annotation of kopf's own domain.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    # The name kopf would use if a handler required a finalizer; none does (see above).
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf's own per-handler chatter ("Handler succeeded") is not worth an Event; ours are explicit.
    settings.posting.level = logging.WARNING
    if ours.watch_timeout:
        settings.watching.server_timeout = ours.watch_timeout
        settings.watching.client_timeout = ours.watch_timeout + 5
    settings.watching.connect_timeout = 10
    settings.execution.max_workers = ours.workers
    api = load_api_client(connections=ours.workers)
    memo.seen = Seen()
    kube, scaler_kube = Kube(api, FIELD_MANAGER, applied=memo.seen.note), Kube(api, AUTOSCALER_MANAGER)
    memo.reconciler = Reconciler(kube, handoff=AutoscalerHandoff(scaler_kube), post=api_poster(kube))
    memo.retrier = Retrier(memo.reconciler.reconcile)
    # `deployments` is kopf's live index (filled as objects are listed and watched).
    memo.resync_stop = resync.start(memo.retrier.run, lambda: deployments.get(None, []), ours.resync_seconds)
    LEADER.set(1)


@kopf.on.cleanup()
def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    memo.resync_stop.set()
    memo.retrier.stop()


@kopf.on.event(GROUP, VERSION, PLURAL)
def deployment_changed(body: kopf.Body, type: str | None, namespace: str, name: str, memo: kopf.Memo,
                       logger: logging.Logger, **_: Any) -> None:
    """A pass when the object is new to us or a user changed it; failures are retried with backoff
    by the Retrier, as for every other trigger."""
    if type == "DELETED":
        memo.seen.news(type, body)
        memo.retrier.forget(namespace, name)
        memo.reconciler.forget(namespace, name)
        logger.info("deleted; its children (LeaderWorkerSet, Services, PodDisruptionBudget, router) go with it "
                    "(garbage collection)")
        return
    if not memo.seen.news(type, body):
        EVENTS_SKIPPED.labels(KIND).inc()
        return
    memo.retrier.run(namespace, name, KIND)


@kopf.on.event(LWS_GROUP, LWS_VERSION, LWS_PLURAL, when=_owned)
@kopf.on.event("", "v1", "services", when=_owned)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", when=_owned)
@kopf.on.event("apps", "v1", "deployments", when=_owned)  # the router: RouterReady follows its pods
@kopf.on.event("", "v1", "configmaps", when=_owned)  # the router's worker list
def child_changed(body: kopf.Body, meta: kopf.Meta, type: str | None, namespace: str, memo: kopf.Memo,
                  **_: Any) -> None:
    kind = body.get("kind", "child")
    if not memo.seen.news(type, body):
        EVENTS_SKIPPED.labels(kind).inc()
        return
    memo.retrier.run(namespace, owner_name(meta), kind)


@kopf.on.event("", "v1", "pods", labels={DEPLOYMENT_LABEL: kopf.PRESENT})
def pod_changed(body: kopf.Body, labels: kopf.Labels, type: str | None, namespace: str, memo: kopf.Memo,
                **_: Any) -> None:
    if not memo.seen.news(type, body):
        EVENTS_SKIPPED.labels("Pod").inc()
        return
    memo.retrier.run(namespace, labels[DEPLOYMENT_LABEL], "Pod")


@kopf.index(GROUP, VERSION, PLURAL)
def deployments(namespace: str, name: str, **_: Any) -> dict[None, tuple[str, str]]:
    return {None: (namespace, name)}  # all known SGLangDeployments under one key


def _established(body: kopf.Body) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in body.get("status", {}).get("conditions") or [])


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions",
               when=lambda name, **_: name == LWS_CRD)
def lws_crd_changed(body: kopf.Body, type: str | None, deployments: kopf.Index, memo: kopf.Memo, **_: Any) -> None:
    if type is None or not _established(body):  # initial listing: every object gets its first pass anyway
        return
    for namespace, name in list(deployments.get(None, [])):
        memo.retrier.run(namespace, name, "CustomResourceDefinition")


@kopf.index(GROUP, VERSION, PLURAL)
def autoscaling_views(namespace: str, name: str, spec: kopf.Spec, status: kopf.Status,
                      **_: Any) -> dict[tuple[str, str], View]:
    """What the autoscaler's supervisor needs of each object without reading it."""
    enabled = bool((spec.get("autoscaling") or {}).get("enabled"))
    has_ours = any(c.get("type") in AUTOSCALER_CONDITIONS for c in status.get("conditions") or [])
    return {(namespace, name): View(enabled, has_ours)}


def _views(index: kopf.Index) -> dict[tuple[str, str], View]:
    return {key: view for key, store in index.items() for view in store}


@kopf.on.startup()
async def start_autoscaler(memo: kopf.Memo, autoscaling_views: kopf.Index, **_: Any) -> None:
    ours: Settings = memo.get("settings") or Settings()
    kube = Kube(load_api_client(), AUTOSCALER_MANAGER)
    scaler = Autoscaler(kube, post=api_poster(kube), settings=ours.autoscaler)
    memo.autoscaler = asyncio.create_task(supervise(scaler, lambda: _views(autoscaling_views)))


@kopf.on.cleanup()
async def stop_autoscaler(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task | None = memo.get("autoscaler")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
