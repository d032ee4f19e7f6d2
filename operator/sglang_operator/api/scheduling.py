"""spec.scheduling: where the pods of a group may run."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .base import ApiModel, Rule
from .kube_types import QUALIFIED_NAME_RE, DnsSubdomain, LabelValue, QualifiedName, qualified_keys

NodeSelector = Annotated[dict[str, LabelValue], Field(max_length=64), qualified_keys("scheduling.nodeSelector")]


class Toleration(ApiModel):
    """A core/v1 Toleration (e.g. for tainted GPU nodes)."""

    key: Annotated[str, Field(max_length=316, pattern=f"^$|{QUALIFIED_NAME_RE}")] | None = None
    """Taint key; empty with operator Exists tolerates everything."""
    operator: Literal["Exists", "Equal"] | None = None
    """Equal (default) or Exists."""
    value: LabelValue | None = None
    """Taint value (Equal only)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to tolerate; empty means all."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated."""

    rules = (
        Rule(
            cel="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            message="tolerations[].value must be empty when operator is Exists",
            check=lambda t: t.operator != "Exists" or not t.value,
        ),
        Rule(
            cel="(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            message="tolerations[].operator must be Exists when key is empty",
            check=lambda t: bool(t.key) or t.operator == "Exists",
        ),
        Rule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="tolerations[].tolerationSeconds requires effect NoExecute",
            check=lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
        ),
    )


class SchedulingSpec(ApiModel):
    """Placement of every pod of every group."""

    node_selector: NodeSelector | None = None
    """Node labels the pods require (e.g. a GPU product label)."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Taints the pods tolerate."""
    affinity: dict[str, Any] | None = Field(default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """A core/v1 Affinity, passed through unchanged."""
    priority_class_name: DnsSubdomain | None = None
    """PriorityClass of the pods."""
    group_topology_key: QualifiedName | None = None
    """Node label (e.g. a rack or NVLink-domain label) whose value all pods of a group must share;
    sets LeaderWorkerSet exclusive placement."""
