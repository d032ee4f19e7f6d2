"""Pydantic JSON Schema -> Kubernetes structural OpenAPI v3 schema.

Structural schemas forbid $ref, nullable unions and `additionalProperties: false`, and pydantic
writes JSON Schema 2020-12 (numeric exclusiveMinimum, const). This walks pydantic's output, inlines
definitions and keeps only keywords from an allow-list, so anything unexpected fails loudly here
instead of being rejected (or silently pruned) by the API server.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault

_KEEP = {
    "type", "description", "default", "enum", "format", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
    "minProperties", "maxProperties", "required", "properties", "items", "additionalProperties",
    "anyOf", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}
_DROP = {"title", "$defs"}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Publish `default_factory` defaults too, so the API server defaults exactly like pydantic.

    A nested object defaults to its fully populated form: the API server checks a default against
    the CEL rules as written, before defaulting its fields, so `{}` would fail `self.tp`. Empty lists
    are left out (absent and empty mean the same to the renderer and keep stored objects small).
    """

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is None:
            return super().get_default_value(schema)
        value = factory()
        if value == []:
            return NoDefault
        if isinstance(value, BaseModel):
            return _without_empty_lists(value.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return [v.model_dump(by_alias=True, exclude_none=True, mode="json") for v in value]


def _without_empty_lists(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _without_empty_lists(v) for k, v in d.items() if v != []}
    return d


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        # Sibling keys (description, default, rules on the field) win over the definition's.
        merged = {**_resolve(dict(target), defs), **siblings}
        if "x-kubernetes-validations" in target and "x-kubernetes-validations" in siblings:
            merged["x-kubernetes-validations"] = target["x-kubernetes-validations"] + siblings["x-kubernetes-validations"]
        return merged
    return node


def _strip_null(node: dict[str, Any]) -> dict[str, Any]:
    """`X | None = None` means "may be omitted"; the API server has no use for null here."""
    options = node.get("anyOf")
    if not options or {"type": "null"} not in options:
        return node
    rest = [o for o in options if o != {"type": "null"}]
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    if outer.get("default", 0) is None:
        del outer["default"]
    if len(rest) == 1:
        return {**rest[0], **outer}
    return {**outer, "anyOf": rest}


def _convert(node: dict[str, Any], defs: dict[str, Any], where: str) -> dict[str, Any]:
    while "$ref" in node or {"type": "null"} in node.get("anyOf", ()):
        node = _strip_null(_resolve(node, defs))  # `Model | None` is a nullable $ref
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "properties":
            out[key] = {name: _convert(sub, defs, f"{where}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, f"{where}[]")
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:  # False: extra="forbid"; the API server prunes/rejects anyway
                out[key] = _convert(value, defs, f"{where}{{}}")
        elif key == "anyOf":
            if not node.get("x-kubernetes-int-or-string"):
                raise ValueError(f"{where}: unions other than int-or-string are not structural: {value}")
            out[key] = value
        elif key == "description":
            out[key] = " ".join(value.split())  # docstrings wrap; one line per description
        elif key in _KEEP:
            out[key] = value
        else:
            raise ValueError(f"{where}: JSON schema keyword {key!r} has no structural OpenAPI equivalent")
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise ValueError(f"{where}: structural schemas need a type")
    return _ordered(out)


_ORDER = ("description", "type", "format", "enum", "default")


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """A readable, stable key order: description and type first, then the rest sorted."""
    head = [k for k in _ORDER if k in node]
    tail = sorted(k for k in node if k not in _ORDER)
    return {k: node[k] for k in head + tail}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    return _convert(raw, raw.get("$defs", {}), model.__name__)
