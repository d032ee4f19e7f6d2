"""Base model and validation rules shared by every API type.

A cross-field rule is written once, as a `Rule`: its CEL expression goes into the CRD
(`x-kubernetes-validations`, enforced by the API server at `kubectl apply` time) and its Python
predicate runs as a pydantic validator (enforced by the operator), both with the same message. That
keeps the two layers from drifting apart; tests assert they reject the same manifests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, core_schema


@dataclass(frozen=True)
class Rule:
    """A validation rule with a CEL form (API server) and a Python form (operator).

    `check` receives the validated value (a model instance for model rules) and returns True when
    the value is acceptable. `field_path` (e.g. ".minReplicas") makes the API server report the error
    at that child field instead of at the object.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def to_crd(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def raise_if_broken(self, value: Any) -> None:
        if not self.check(value):
            # field_path travels in the context so errors name the same field as the API server's.
            raise PydanticCustomError("rule", self.message.replace("{", "{{").replace("}", "}}"),
                                      {"field_path": self.field_path or ""})

    # As `Annotated[...]` metadata the rule applies to a single field.
    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        def validate(value: Any) -> Any:
            self.raise_if_broken(value)
            return value

        return core_schema.no_info_after_validator_function(validate, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        out = handler(schema)
        out.setdefault("x-kubernetes-validations", []).append(self.to_crd())
        return out


def _add_model_rules(schema: dict[str, Any], cls: type[ApiModel]) -> None:
    rules = cls.__dict__.get("rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.to_crd() for r in rules]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors (the API server prunes
    or rejects them too); attribute docstrings become the CRD's field descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        json_schema_extra=_add_model_rules,  # type: ignore[arg-type]
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Any:
        for rule in type(self).__dict__.get("rules", ()):
            rule.raise_if_broken(self)
        return self

    def to_api(self) -> dict[str, Any]:
        """The object as the API server would store it (camelCase, unset optionals omitted)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
