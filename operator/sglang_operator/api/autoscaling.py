"""spec.autoscaling: the built-in queue-depth autoscaler (scales groups, HPA-style behaviour)."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from .base import ApiModel, Rule

METRIC_RE = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
DEFAULT_METRIC = "sglang:num_requests_waiting"
# Queue gauges the scraper understands out of the box (ours, upstream SGLang's, vLLM's).
KNOWN_QUEUE_METRICS = (DEFAULT_METRIC, "sglang:num_queue_reqs", "vllm:num_requests_waiting")

MetricName = Annotated[
    str,
    Field(min_length=1, max_length=200),
    Rule(
        cel=f"self.matches('{METRIC_RE}')",
        message="autoscaling.metric must be a Prometheus metric name matching "
        f"{METRIC_RE[1:-1]}, e.g. {DEFAULT_METRIC}",
        check=lambda m: re.match(METRIC_RE, m) is not None,
    ),
]


class ScalingPolicy(ApiModel):
    """At most `value` groups (Pods) or percent of current groups (Percent) per `periodSeconds`."""

    type: Literal["Pods", "Percent"]
    """Pods: an absolute number of groups; Percent: a share of the current groups."""
    value: Annotated[int, Field(ge=1, le=1000)]
    """Amount of change the policy allows."""
    period_seconds: Annotated[int, Field(ge=1, le=1800)]
    """Window the amount applies to."""


Policies = Annotated[list[ScalingPolicy], Field(min_length=1, max_length=8)]
SelectPolicy = Literal["Max", "Min", "Disabled"]


class ScaleUpBehavior(ApiModel):
    """How fast to add groups. A group loads weights for minutes, so scale up early and in steps."""

    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3600)] = 0
    """Use the lowest recommendation of this window (0: react at once)."""
    policies: Policies = Field(
        default_factory=lambda: [ScalingPolicy(type="Pods", value=2, period_seconds=60)]
    )
    """Rate limits; selectPolicy picks among them."""
    select_policy: SelectPolicy = "Max"
    """Max: the policy allowing the largest change; Min: the smallest; Disabled: never scale up."""


class ScaleDownBehavior(ApiModel):
    """How fast to remove groups: slowly, a new group costs minutes of weight loading."""

    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    """Use the highest recommendation of this window, so short lulls do not drop groups."""
    policies: Policies = Field(
        default_factory=lambda: [ScalingPolicy(type="Pods", value=1, period_seconds=120)]
    )
    """Rate limits; selectPolicy picks among them."""
    select_policy: SelectPolicy = "Max"
    """Max: the policy allowing the largest change; Min: the smallest; Disabled: never scale down."""


class AutoscalingSpec(ApiModel):
    """Scale the number of groups on the queue depth each leader reports."""

    enabled: bool = False
    """Turn the built-in autoscaler on. Leave off to drive spec.parallelism.dp yourself or through
    the scale subresource (HPA, KEDA)."""
    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Fewest groups."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Most groups (required when enabled: GPUs are expensive, no implicit ceiling)."""
    metric: MetricName = DEFAULT_METRIC
    """Gauge scraped from each leader's /metrics, summed over leaders. Also understood:
    sglang:num_queue_reqs (upstream SGLang), vllm:num_requests_waiting."""
    target_per_replica: Annotated[float, Field(gt=0, le=1_000_000)] = 8
    """Metric value per group to aim for (waiting requests per group)."""
    poll_interval_seconds: Annotated[int, Field(ge=1, le=600)] = 15
    """How often leaders are scraped and a decision is made."""
    scale_up: ScaleUpBehavior = Field(default_factory=ScaleUpBehavior)
    """Scale-up behaviour."""
    scale_down: ScaleDownBehavior = Field(default_factory=ScaleDownBehavior)
    """Scale-down behaviour."""

    rules = (
        Rule(
            cel="!self.enabled || has(self.maxReplicas)",
            message="autoscaling.maxReplicas is required when autoscaling.enabled is true",
            check=lambda a: not a.enabled or a.max_replicas is not None,
            field_path=".maxReplicas",
        ),
        Rule(
            cel="!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            message="autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas",
            check=lambda a: a.max_replicas is None or a.min_replicas <= a.max_replicas,
            field_path=".minReplicas",
        ),
    )
