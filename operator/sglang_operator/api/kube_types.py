"""Kubernetes value types (quantities, int-or-percent, names) checked the same way by both layers.

Patterns used inside CEL rules (QUALIFIED_NAME_RE, in `qualified_keys`) avoid backslashes, so the
very same pattern is valid inside a CEL string literal; IMAGE_RE is only an OpenAPI `pattern`.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from .base import Rule

# Kubernetes resource.Quantity grammar, non-negative only: 8, 500m, 16Gi, 1.5, 1e3.
QUANTITY_RE = "^([0-9]+([.][0-9]*)?|[.][0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][-+]?[0-9]+)?$"
PERCENT_RE = "^(0|[1-9][0-9]?|100)%$"
# DNS-1123 label, as used by ConfigMap/Secret/PVC names and label values' first char rules.
DNS_SUBDOMAIN_RE = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

def _int_or_matching(pattern: str, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and len(value) <= 64 and re.match(pattern, value) is not None


def int_or_string(pattern: str, message: str) -> Any:
    """An int-or-string field: a non-negative int, or a string matching `pattern`.

    The CRD says so with `minimum`/`pattern`/`maxLength` (each applies to its own branch), not with
    CEL: the API server costs CEL on int-or-string values as if they were megabytes long and
    rejects the CRD. Its error then reads "should match '<pattern>'"; the operator's reads `message`.
    """

    def check(value: Any) -> Any:
        if not _int_or_matching(pattern, value):
            raise PydanticCustomError("int_or_string", message)
        return value

    schema = {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        "minimum": 0,
        "maxLength": 64,
        "pattern": pattern,
    }
    return Annotated[int | str, WithJsonSchema(schema), AfterValidator(check)]


Quantity = int_or_string(QUANTITY_RE, "must be a non-negative Kubernetes quantity such as 8, 500m, 1.5 or 16Gi")
IntOrPercent = int_or_string(PERCENT_RE, "must be a non-negative integer or a percentage such as 25%")

DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_RE)]

# Label/annotation keys: an optional DNS-subdomain prefix and "/", then a name of <= 63 characters.
QUALIFIED_NAME_RE = (
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_RE = "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# Container images: no whitespace anywhere (the kubelet would reject it at pod creation).
IMAGE_RE = r"^\S+$"

QualifiedName = Annotated[str, Field(min_length=1, max_length=316, pattern=QUALIFIED_NAME_RE)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_RE)]
Image = Annotated[str, Field(min_length=1, max_length=512, pattern=IMAGE_RE)]


def _qualified_keys(keys: Any) -> bool:
    return all(len(k) <= 316 and re.match(QUALIFIED_NAME_RE, k) for k in keys)


def qualified_keys(field: str) -> Rule:
    """Keys of a label/annotation map must be qualified names (structural schemas cannot say so)."""
    return Rule(
        cel=f"self.all(k, k.size() <= 316 && k.matches('{QUALIFIED_NAME_RE}'))",
        message=f"{field} keys must be qualified names: [DNS-subdomain prefix/]name, the name at most "
        "63 characters of letters, digits, '-', '_' and '.', e.g. nvidia.com/gpu.product",
        check=_qualified_keys,
    )
