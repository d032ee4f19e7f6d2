"""spec.resources: per-pod compute resources; GPUs follow parallelism.gpusPerPod unless given here."""
from __future__ import annotations

import re
from typing import Annotated, Any

from kubernetes.utils import parse_quantity
from pydantic import Field

from .base import ApiModel, Rule
from .kube_types import Quantity

GPU_RESOURCE = "nvidia.com/gpu"
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
EXTENDED_RE = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
WHOLE_RE = "^[0-9]+$"


def _is_extended(name: str) -> bool:
    return "/" in name


def _valid_names(m: dict[str, Any]) -> bool:
    return all(k in STANDARD_RESOURCES or k.startswith("hugepages-") or re.match(EXTENDED_RE, k) for k in m)


def _whole_extended(m: dict[str, Any]) -> bool:
    return all(
        not _is_extended(k) or (isinstance(v, int) or re.match(WHOLE_RE, v) is not None) for k, v in m.items()
    )


ResourceMap = Annotated[
    dict[str, Quantity],
    Field(max_length=12),
    Rule(
        cel=f"self.all(k, k in {list(STANDARD_RESOURCES)} || k.startsWith('hugepages-') || k.matches('{EXTENDED_RE}'))",
        message="resources keys must be cpu, memory, ephemeral-storage, hugepages-<size> or a "
        "domain-prefixed extended resource such as nvidia.com/gpu",
        check=_valid_names,
    ),
    Rule(
        cel=f"self.all(k, !k.contains('/') || type(self[k]) == int || self[k].matches('{WHOLE_RE}'))",
        message="extended resources such as nvidia.com/gpu must be whole numbers",
        check=_whole_extended,
    ),
]


def _requests_within_limits(r: "ResourcesSpec") -> bool:
    if not r.requests or not r.limits:
        return True
    return all(k not in r.limits or parse_quantity(v) <= parse_quantity(r.limits[k]) for k, v in r.requests.items())


def _same_extended(r: "ResourcesSpec") -> bool:
    if not r.requests or not r.limits:
        return True
    return all(not _is_extended(k) or k not in r.limits or r.limits[k] == v for k, v in r.requests.items())


class ResourcesSpec(ApiModel):
    """Requests and limits of the runtime container in every pod of a group."""

    requests: ResourceMap | None = None
    """Requested resources, e.g. {cpu: 16, memory: 200Gi}."""
    limits: ResourceMap | None = None
    """Resource limits. nvidia.com/gpu defaults to parallelism.gpusPerPod (0 runs without GPUs)."""
    shared_memory: Quantity = "16Gi"
    """Size of the in-memory /dev/shm (NCCL and the tokenizer workers use it); counts against memory."""

    rules = (
        Rule(
            cel="!has(self.requests) || !has(self.limits) || "
            "self.requests.all(k, !k.contains('/') || !(k in self.limits) || self.requests[k] == self.limits[k])",
            message="resources.requests and resources.limits must give the same amount of an extended "
            "resource such as nvidia.com/gpu (they cannot be overcommitted)",
            check=_same_extended,
            field_path=".limits",
        ),
        Rule(
            cel="!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
            "quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)",
            message="resources.requests must not exceed resources.limits for the same resource",
            check=_requests_within_limits,
            field_path=".requests",
        ),
    )

    def limits_with_extended(self, gpus_default: int) -> dict[str, int | str]:
        """Limits as given, plus every extended resource only requested (Kubernetes needs it as a
        limit) and nvidia.com/gpu = `gpus_default` when not given at all."""
        limits = dict(self.limits or {})
        for k, v in (self.requests or {}).items():
            if _is_extended(k):
                limits.setdefault(k, v)
        limits.setdefault(GPU_RESOURCE, gpus_default)
        return limits
