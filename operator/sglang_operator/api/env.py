"""spec.env: environment variables of the runtime container (values never pass through a shell)."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from .base import ApiModel, Rule
from .kube_types import DnsSubdomain

ENV_NAME_RE = "^[-._a-zA-Z][-._a-zA-Z0-9]*$"
KEY_RE = "^[-._a-zA-Z0-9]+$"


class KeySelector(ApiModel):
    name: DnsSubdomain
    """Name of the Secret or ConfigMap."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=KEY_RE)]
    """Key within it."""
    optional: bool | None = None
    """Start even when the object or key is missing."""


class EnvVarSource(ApiModel):
    """Take the value from a Secret or a ConfigMap (exactly one)."""

    secret_key_ref: KeySelector | None = None
    """A key of a Secret (e.g. HF_TOKEN)."""
    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""

    rules = (
        Rule(
            cel="has(self.secretKeyRef) != has(self.configMapKeyRef)",
            message="env[].valueFrom must set exactly one of secretKeyRef, configMapKeyRef",
            check=lambda s: (s.secret_key_ref is None) != (s.config_map_key_ref is None),
        ),
    )


class EnvVar(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_NAME_RE)]
    """Variable name."""
    value: Annotated[str, Field(max_length=32768)] | None = None
    """Literal value. Kubernetes expands $(VAR) references to earlier variables; write $$ for a literal $."""
    value_from: EnvVarSource | None = None
    """Value from a Secret or ConfigMap."""

    rules = (
        Rule(
            cel="!(has(self.value) && has(self.valueFrom))",
            message="env[].value and env[].valueFrom are mutually exclusive",
            check=lambda e: e.value is None or e.value_from is None,
        ),
    )


def _unique_names(env: list[EnvVar]) -> list[EnvVar]:
    seen: set[str] = set()
    for var in env:
        if var.name in seen:
            # Same words as the API server's list-map check ("Duplicate value").
            raise ValueError(f"Duplicate value: env name {var.name!r} appears more than once")
        seen.add(var.name)
    return env


EnvList = Annotated[
    list[EnvVar],
    Field(max_length=128, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
    AfterValidator(_unique_names),
]
