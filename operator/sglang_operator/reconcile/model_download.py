"""spec.model.hub's download, as the pods report it (pure): the ModelDownloading condition and the
Degraded reason of a failed download.

Each pod's `model-download` init container (render/hub.py) is
- running: downloading (its log has the progress lines);
- terminated with exit code 0: done;
- terminated with another code, now or as its lastState while it waits to restart: failed, and its
  termination message is `{"reason": ..., "message": ...}` (radix_runtime/fetch_model.py), or the
  log's tail when it died before writing one.

Failed downloads make Degraded True with reason `Model<reason>` (ModelUnauthorized,
ModelRepoNotFound, ModelRevisionNotFound, ModelDiskFull, ModelCacheNotWritable, ModelNetworkError,
ModelDownloadFailed). LeaderWorkerSet recreates a whole group when one of its containers restarts,
so the failed pod and its message are soon gone and a fresh pod tries again: the reason stays until
every pod has the model (`sticky`), instead of flapping between retries.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..kube.conditions import condition
from ..render.hub import DOWNLOAD_CONTAINER

MODEL_DOWNLOADING = "ModelDownloading"
REASON_PREFIX = "Model"
FAILED = "DownloadFailed"


@dataclass(frozen=True)
class Failure:
    pod: str
    reason: str  # fetch_model's reason, e.g. Unauthorized
    message: str


@dataclass(frozen=True)
class Downloads:
    pods: int  # pods that have the download container
    done: int
    running: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = field(default=())


def _failure(pod: str, terminated: Mapping[str, Any]) -> Failure:
    text = str(terminated.get("message") or "").strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and parsed.get("reason"):
            return Failure(pod, str(parsed["reason"]), str(parsed.get("message") or ""))
    except ValueError:
        pass
    tail = text.splitlines()[-1] if text else ""
    why = f"exit code {terminated.get('exitCode')}, {terminated.get('reason') or 'Error'}"
    return Failure(pod, FAILED, f"{why}: {tail}" if tail else why)


def observe_downloads(pods: Sequence[Mapping[str, Any]]) -> Downloads | None:
    """None when no pod has the download container (spec.model.hub is not used)."""
    n = done = 0
    running: list[str] = []
    failures: list[Failure] = []
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if meta.get("deletionTimestamp") or not any(c.get("name") == DOWNLOAD_CONTAINER
                                                    for c in spec.get("initContainers") or []):
            continue
        n += 1
        name = str(meta.get("name") or "")
        st = next((s for s in (pod.get("status") or {}).get("initContainerStatuses") or []
                   if s.get("name") == DOWNLOAD_CONTAINER), None)
        if st is None:
            continue  # not started yet
        state, last = st.get("state") or {}, (st.get("lastState") or {}).get("terminated")
        if (t := state.get("terminated")) is not None:
            if t.get("exitCode") == 0:
                done += 1
            else:
                failures.append(_failure(name, t))
        elif "running" in state:
            running.append(name)
        elif last is not None and last.get("exitCode") not in (0, None):
            failures.append(_failure(name, last))
    return Downloads(n, done, tuple(sorted(running)), tuple(failures)) if n else None


def download_view(pod: Mapping[str, Any]) -> Any:
    """What observe_downloads reads of a pod's status (reconcile/triggers.py: a change is news)."""
    st = next((s for s in (pod.get("status") or {}).get("initContainerStatuses") or []
               if s.get("name") == DOWNLOAD_CONTAINER), None)
    if st is None:
        return None
    state, last = st.get("state") or {}, (st.get("lastState") or {}).get("terminated") or {}
    t = state.get("terminated") or {}
    return [sorted(state), t.get("exitCode"), t.get("message"), last.get("exitCode"), last.get("message")]


def _logs(namespace: str, pod: str) -> str:
    return f"kubectl -n {namespace} logs {pod} -c {DOWNLOAD_CONTAINER}"


def downloading_condition(d: Downloads, namespace: str) -> dict[str, Any]:
    if d.running:
        return condition(MODEL_DOWNLOADING, True, "Downloading",
                         f"{len(d.running)}/{d.pods} pods downloading the model ({d.done} done); progress: "
                         f"{_logs(namespace, d.running[0])} -f")
    if d.failures:
        f = d.failures[0]
        return condition(MODEL_DOWNLOADING, False, f.reason, f"The download failed on {f.pod}: {f.message}")
    if d.done == d.pods:
        return condition(MODEL_DOWNLOADING, False, "Downloaded", f"All {d.pods} pods have the model.")
    return condition(MODEL_DOWNLOADING, False, "Waiting", f"{d.done}/{d.pods} pods have the model; the others "
                                                          "have not started their download yet.")


def download_degraded(d: Downloads | None, namespace: str, previous: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(reason, message) of Degraded, or None. `previous`: the stored Degraded condition."""
    if d is None:
        return None
    if d.failures:
        f = d.failures[0]
        return (REASON_PREFIX + f.reason, f"The model download failed on pod {f.pod}: {f.message}. The pods retry; "
                                          f"details: {_logs(namespace, f.pod)}")
    if sticky(d, previous):
        return str(previous["reason"]), str(previous.get("message") or "")  # type: ignore[index]
    return None


def sticky(d: Downloads, previous: Mapping[str, Any] | None) -> bool:
    """Keep a download's Degraded reason while its retries run: until every pod has the model."""
    return (previous is not None and previous.get("status") == "True" and d.done < d.pods
            and str(previous.get("message") or "").startswith("The model download failed"))
