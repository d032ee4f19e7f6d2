"""spec.resources: per-pod compute resources; GPUs follow parallelism.gpusPerPod unless given here."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import ApiModel, Rule
from .kube_types import Quantity

GPU_RESOURCE = "nvidia.com/gpu"

ResourceMap = Annotated[dict[str, Quantity], Field(max_length=16)]


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
            cel=f"!has(self.requests) || !has(self.limits) || !('{GPU_RESOURCE}' in self.requests) || "
            f"!('{GPU_RESOURCE}' in self.limits) || self.requests['{GPU_RESOURCE}'] == self.limits['{GPU_RESOURCE}']",
            message=f"resources.requests and resources.limits must give the same {GPU_RESOURCE} "
            "(extended resources cannot be overcommitted)",
            check=lambda r: not (r.requests and r.limits and GPU_RESOURCE in r.requests and GPU_RESOURCE in r.limits)
            or r.requests[GPU_RESOURCE] == r.limits[GPU_RESOURCE],
            field_path=".limits",
        ),
    )

    def gpus(self, default: int) -> int | str:
        """nvidia.com/gpu per pod: what the user gave, else `default`."""
        for given in (self.limits, self.requests):
            if given and GPU_RESOURCE in given:
                return given[GPU_RESOURCE]
        return default
