"""Secrets a fleet's pods use: the runtime's API key (spec.apiKeySecret) and registry credentials
(spec.imagePullSecrets). The operator only names them in the pod templates; it never reads them."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import ApiModel
from .env import KEY_RE
from .kube_types import DnsSubdomain

# The runtime reads its key from this variable (radix_runtime.launch_server.API_KEY_ENV), which the
# pod template fills from the Secret: the key never appears in argv, the spec or an Event.
API_KEY_ENV = "SGLANG_API_KEY"


class ApiKeySecret(ApiModel):
    """A key of a Secret in the SGLangDeployment's namespace holding the API key (`--api-key`)."""

    name: DnsSubdomain
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=KEY_RE)]
    """Key within it whose value is the API key."""


class LocalObjectReference(ApiModel):
    name: DnsSubdomain
    """Name of a Secret of type kubernetes.io/dockerconfigjson in the same namespace."""


ImagePullSecrets = Annotated[
    list[LocalObjectReference],
    Field(max_length=16, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
]
