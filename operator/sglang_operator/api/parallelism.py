"""spec.parallelism: how a model replica is cut over GPUs and pods, and how many replicas run."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import ApiModel, Rule

# Most GPU nodes carry 8 accelerators; a group fills whole nodes unless told otherwise.
DEFAULT_MAX_GPUS_PER_POD = 8

_GPUS = "(self.tp * self.pp)"
_PER_POD = (
    f"(has(self.gpusPerPod) ? self.gpusPerPod : ({_GPUS} < {DEFAULT_MAX_GPUS_PER_POD} ? {_GPUS} : "
    f"{DEFAULT_MAX_GPUS_PER_POD}))"
)


class ParallelismSpec(ApiModel):
    """Tensor (tp) and pipeline (pp) parallel degree of one replica, data parallel replicas (dp).

    One replica (a LeaderWorkerSet group) uses tp*pp GPUs spread over tp*pp/gpusPerPod pods.
    """

    tp: Annotated[int, Field(ge=1, le=1024)] = 1
    """Tensor parallel degree (--tp-size)."""
    pp: Annotated[int, Field(ge=1, le=64)] = 1
    """Pipeline parallel degree (--pp-size)."""
    dp: Annotated[int, Field(ge=0, le=1000)] = 1
    """Number of replicas (groups). The scale subresource writes this field; with the built-in
    autoscaler on it is the initial size only."""
    gpus_per_pod: Annotated[int, Field(ge=1, le=64)] | None = None
    """GPUs per pod; default min(tp*pp, 8). tp*pp must be divisible by it."""

    rules = (
        Rule(
            cel=f"{_GPUS} % {_PER_POD} == 0",
            message="parallelism.gpusPerPod must divide tp*pp (GPUs per replica); "
            f"it defaults to min(tp*pp, {DEFAULT_MAX_GPUS_PER_POD})",
            check=lambda p: p.gpus_per_group % p.effective_gpus_per_pod == 0,
            field_path=".gpusPerPod",
        ),
    )

    @property
    def gpus_per_group(self) -> int:
        return self.tp * self.pp

    @property
    def effective_gpus_per_pod(self) -> int:
        if self.gpus_per_pod is not None:
            return self.gpus_per_pod
        return min(self.gpus_per_group, DEFAULT_MAX_GPUS_PER_POD)

    @property
    def group_size(self) -> int:
        """Pods per replica (LeaderWorkerSet size)."""
        return self.gpus_per_group // self.effective_gpus_per_pod
