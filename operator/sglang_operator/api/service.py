"""spec.service: the Service in front of the leaders."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import ApiModel
from .kube_types import qualified_keys

DEFAULT_PORT = 30000  # SGLang's default --port


class ServiceSpec(ApiModel):
    """The Service selects leader pods only (worker-index 0): they serve HTTP and /metrics."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """Service type."""
    port: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_PORT
    """Service port (the container always listens on 30000)."""
    annotations: Annotated[
        dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64), qualified_keys("service.annotations")
    ] | None = None
    """Extra annotations for the Service (e.g. load-balancer settings)."""
