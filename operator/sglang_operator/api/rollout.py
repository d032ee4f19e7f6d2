"""spec.rollout: rolling updates of groups and how pods drain on the way out."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import ApiModel, Rule
from .kube_types import IntOrPercent


def _zero(v: int | str) -> bool:
    return v == 0 or v == "0%"


class RolloutSpec(ApiModel):
    """LeaderWorkerSet RollingUpdate settings (counted in groups) and graceful termination."""

    max_surge: IntOrPercent = 0
    """Extra groups allowed above the desired count during an update (absolute or percent)."""
    max_unavailable: IntOrPercent = 1
    """Groups that may be unavailable during an update (absolute or percent)."""
    drain_seconds: Annotated[int, Field(ge=0, le=3600)] = 15
    """preStop pause so the Service stops sending traffic before the server gets SIGTERM."""
    termination_grace_period_seconds: Annotated[int, Field(ge=1, le=7200)] = 180
    """Time for in-flight generations to finish after SIGTERM (includes drainSeconds)."""

    rules = (
        Rule(
            cel="!((self.maxSurge == 0 || self.maxSurge == '0%') && "
            "(self.maxUnavailable == 0 || self.maxUnavailable == '0%'))",
            message="rollout.maxSurge and rollout.maxUnavailable must not both be 0",
            check=lambda r: not (_zero(r.max_surge) and _zero(r.max_unavailable)),
            field_path=".maxUnavailable",
        ),
        Rule(
            cel="self.drainSeconds < self.terminationGracePeriodSeconds",
            message="rollout.drainSeconds must be less than rollout.terminationGracePeriodSeconds",
            check=lambda r: r.drain_seconds < r.termination_grace_period_seconds,
            field_path=".drainSeconds",
        ),
    )
