"""kopf registrations (and their filters): every trigger ends in Reconciler.reconcile.

Triggers:
- the SGLangDeployment: create, update (spec/metadata; our own status writes do not trigger it) and
  resume (operator start); our delete handler is optional, so it adds no finalizer (garbage
  collection removes the children);
- its children (LeaderWorkerSet, Service, PodDisruptionBudget), selected by a controller owner
  reference to an SGLangDeployment: an edit or a deletion is repaired within seconds, and LWS status
  changes flow into our status;
- the LeaderWorkerSet CRD becoming established: objects waiting for it (Degraded, retrying with
  backoff) are reconciled at once instead of at their next retry;
- a slow resync of every known object (resync.py), a safety net for events missed while the API
  server was unreachable.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import kopf

from ..api.names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from ..metrics import LEADER
from . import events as ev
from . import resync
from .kube import LWS_CRD, LWS_GROUP, LWS_PLURAL, LWS_VERSION, Kube, describe, load_api_client
from .reconciler import Reconciler

FIELD_MANAGER = "sglang-operator"
RESYNC_SECONDS = float(os.environ.get("SGLANG_OPERATOR_RESYNC_SECONDS", "300"))
BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0

log = logging.getLogger("sglang_operator.handlers")


def backoff(retry: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(retry, 16))


def owner_name(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("apiVersion") == API_VERSION and ref.get("kind") == KIND:
            return ref.get("name")
    return None


def _owned(meta: Mapping[str, Any], **_: Any) -> bool:
    return owner_name(meta) is not None


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)  # the same credentials as our own client (kube.load_api_client)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, deployments: kopf.Index, **_: Any) -> None:
    # Handler progress (retry counts) under status.kopf, which the CRD keeps; handlers return None,
    # so nothing else lands in status. The diff base stays in an annotation under our own domain.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf's own per-handler chatter ("Handler succeeded") is not worth an Event; ours are explicit.
    settings.posting.level = logging.WARNING
    kube = Kube(load_api_client(), FIELD_MANAGER)
    memo.reconciler = Reconciler(kube, post=ev.api_poster(kube))
    # `deployments` is kopf's live index (filled as objects are listed and watched).
    memo.resync_stop = resync.start(memo.reconciler.reconcile, lambda: deployments.get(None, []), RESYNC_SECONDS)
    LEADER.set(1)


@kopf.on.cleanup()
def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    memo.resync_stop.set()


def _run(memo: kopf.Memo, namespace: str, name: str, trigger: str, retry: int) -> None:
    try:
        out = memo.reconciler.reconcile(namespace, name, trigger=trigger)
    except Exception as e:  # API server unreachable, 5xx, a write conflict: retry with backoff
        raise kopf.TemporaryError(f"reconcile failed ({describe(e)}); retrying", delay=backoff(retry)) from None
    if out.problem is not None:
        if out.problem.retry:
            raise kopf.TemporaryError(out.problem.message, delay=backoff(retry))
        raise kopf.PermanentError(out.problem.message)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile(namespace: str, name: str, memo: kopf.Memo, retry: int, **_: Any) -> None:
    _run(memo, namespace, name, KIND, retry)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def deleted(namespace: str, name: str, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    memo.reconciler.forget(namespace, name)
    logger.info("deleted; the LeaderWorkerSet, Service and PodDisruptionBudget go with it (garbage collection)")


@kopf.on.event(LWS_GROUP, LWS_VERSION, LWS_PLURAL, when=_owned)
@kopf.on.event("", "v1", "services", when=_owned)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", when=_owned)
def child_changed(body: kopf.Body, meta: kopf.Meta, namespace: str, memo: kopf.Memo, logger: logging.Logger,
                  **_: Any) -> None:
    owner = owner_name(meta)
    try:
        memo.reconciler.reconcile(namespace, owner, trigger=body.get("kind", "child"))
    except Exception as e:  # the timer or the next event retries
        logger.warning("reconcile of %s after a %s event failed: %s", owner, body.get("kind"), describe(e))


@kopf.index(GROUP, VERSION, PLURAL)
def deployments(namespace: str, name: str, **_: Any) -> dict[None, tuple[str, str]]:
    return {None: (namespace, name)}  # all known SGLangDeployments under one key


def _established(body: kopf.Body) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in body.get("status", {}).get("conditions") or [])


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions",
               when=lambda name, **_: name == LWS_CRD)
def lws_crd_changed(body: kopf.Body, type: str | None, deployments: kopf.Index, memo: kopf.Memo,
                    logger: logging.Logger, **_: Any) -> None:
    if type is None or not _established(body):  # initial listing: resume handles those objects
        return
    for namespace, name in list(deployments.get(None, [])):
        try:
            memo.reconciler.reconcile(namespace, name, trigger="CustomResourceDefinition")
        except Exception as e:
            logger.warning("reconcile of %s/%s after the LeaderWorkerSet CRD appeared failed: %s",
                           namespace, name, describe(e))


