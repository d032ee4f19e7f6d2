"""SGLangDeployment status, written by the operator (conditions follow metav1.Condition)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from .base import ApiModel

class Condition(ApiModel):
    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Ready, Progressing, Degraded, ScalingActive, ..."""
    status: Literal["True", "False", "Unknown"]
    """Condition status."""
    reason: Annotated[str, Field(max_length=1024)] | None = None
    """CamelCase reason for the last transition."""
    message: Annotated[str, Field(max_length=32768)] | None = None
    """Human-readable details."""
    last_transition_time: datetime
    """When the status last changed."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """metadata.generation the condition was computed from."""


class SGLangDeploymentStatus(ApiModel):
    """Observed state; `replicas`/`selector` back the scale subresource."""

    conditions: Annotated[
        list[Condition],
        Field(max_length=16, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
    ] = Field(default_factory=list)
    """Latest observations."""
    observed_generation: int | None = None
    """metadata.generation the operator last acted on."""
    replicas: int | None = None
    """Groups that exist."""
    ready_replicas: int | None = None
    """Groups whose pods are all Ready (counted from the pods, not from LWS status alone)."""
    desired_replicas: int | None = None
    """Groups wanted now (spec or autoscaler)."""
    selector: str | None = None
    """Label selector of the leader pods (for the scale subresource / HPA)."""
    endpoint: str | None = None
    """In-cluster URL of the Service."""
    queue_depth: int | None = None
    """Waiting requests summed over leaders at the last scrape."""
    last_scale_time: datetime | None = None
    """When the autoscaler last changed the number of groups."""
    kopf: dict[str, Any] | None = Field(default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """kopf's bookkeeping (handler progress); not an API."""
