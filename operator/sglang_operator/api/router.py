"""spec.router: the SGLang model gateway (SMG) in front of the groups, balancing by cache affinity.

The operator renders a Deployment and a Service `<name>-router`, and the worker list SMG reads
(a ConfigMap holding SMG's file-discovery manifest: the Ready leaders, keyed by pod uid). The plain
`<name>-api` Service stays, so clients can bypass the router. docs/routing.md says when to use it.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import ApiModel
from .kube_types import Image
from .resources import ResourceMap

# The SMG release the operator is tested with (tests run `smg` 1.13.0 from PyPI, the test extra).
SMG_VERSION = "1.13.0"
DEFAULT_ROUTER_IMAGE = f"lightseekorg/smg:v{SMG_VERSION}"
ROUTER_PORT = 30000  # SMG's default --port, like the runtime's
ROUTER_METRICS_PORT = 29000  # SMG's default --prometheus-port

Policy = Literal["cache_aware", "round_robin", "power_of_two", "random", "least_load", "prefix_hash",
                 "consistent_hashing"]


class RouterResources(ApiModel):
    """Requests and limits of the router container (SMG is a Rust binary: CPU, no GPU)."""

    requests: ResourceMap | None = None
    limits: ResourceMap | None = None


class RouterSpec(ApiModel):
    """SMG in front of the group leaders. Off by default: `<name>-api` spreads at random."""

    enabled: bool = False
    """Deploy the router."""
    policy: Policy = "cache_aware"
    """SMG --policy. cache_aware sends a request to the worker whose cache holds the longest prefix
    of it, unless the load is imbalanced (then to the least loaded)."""
    cache_threshold: Annotated[float, Field(ge=0, le=1)] = 0.3
    """cache_aware: the fraction of a request's prefix a worker must match to be picked for it."""
    balance_abs_threshold: Annotated[int, Field(ge=0)] = 64
    """cache_aware: load is imbalanced when max - min outstanding requests exceeds this ..."""
    balance_rel_threshold: Annotated[float, Field(ge=1)] = 1.5
    """... and max exceeds min times this."""
    replicas: Annotated[int, Field(ge=0, le=32)] = 1
    """Router pods. Each keeps its own cache-affinity tree, so more than one spreads a prefix."""
    image: Image = DEFAULT_ROUTER_IMAGE
    """Router image (pinned to the SMG release the operator is tested with)."""
    resources: RouterResources = Field(default_factory=RouterResources)
    """Router container resources."""
    extra_args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = Field(
        default_factory=list
    )
    """Extra `smg launch` flags appended after the generated ones, one list item per argv element
    (no shell)."""
