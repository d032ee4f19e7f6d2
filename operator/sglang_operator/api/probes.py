"""spec.probes: overrides of the probe defaults (which fit multi-minute weight loads)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import ApiModel

Seconds = Annotated[int, Field(ge=1, le=86400)]


class ProbeOverride(ApiModel):
    """Unset fields keep the operator's default for that probe."""

    path: Annotated[str, Field(min_length=1, max_length=256, pattern="^/[^ ]*$")] | None = None
    """HTTP path on the server port."""
    initial_delay_seconds: Annotated[int, Field(ge=0, le=86400)] | None = None
    """Seconds before the first probe."""
    period_seconds: Seconds | None = None
    """Seconds between probes."""
    timeout_seconds: Seconds | None = None
    """Seconds one probe may take; keep it above the server's own 20 s health check."""
    failure_threshold: Annotated[int, Field(ge=1, le=100000)] | None = None
    """Consecutive failures before the probe counts as failed."""


class ProbesSpec(ApiModel):
    """Probe overrides for the leader (which serves HTTP) and, where it applies, the workers."""

    startup: ProbeOverride | None = None
    """Startup probe: budget = periodSeconds * failureThreshold (default 10 s * 180 = 30 min)."""
    readiness: ProbeOverride | None = None
    """Readiness probe (default /health_generate on the leader, /health on workers)."""
    liveness: ProbeOverride | None = None
    """Liveness probe (default /health)."""
