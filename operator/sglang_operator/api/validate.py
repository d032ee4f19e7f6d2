"""Turn manifests into models, with errors that name the field the way kubectl does."""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import ValidationError

from .spec import SGLangDeployment, SGLangDeploymentSpec


class InvalidSpec(ValueError):
    """One line per problem: `<field path>: <what is allowed>`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _path(loc: tuple[Any, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def _problems(err: ValidationError, prefix: str) -> list[str]:
    # Union members and after-validators repeat locations; keep the first message per location.
    seen: dict[str, str] = {}
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if p not in ("int", "str") and not str(p).startswith("function-"))
        child = (e.get("ctx") or {}).get("field_path", "")  # a rule about one field of the object
        seen.setdefault(_path(loc, prefix) + child, e["msg"].removeprefix("Value error, "))
    return [f"{path}: {msg}" if path else msg for path, msg in seen.items()]


def parse_spec(spec: Mapping[str, Any] | SGLangDeploymentSpec) -> SGLangDeploymentSpec:
    if isinstance(spec, SGLangDeploymentSpec):
        return spec
    try:
        return SGLangDeploymentSpec.model_validate(spec)
    except ValidationError as err:
        raise InvalidSpec(_problems(err, "spec")) from None


def parse_deployment(obj: Mapping[str, Any]) -> SGLangDeployment:
    try:
        return SGLangDeployment.model_validate(obj)
    except ValidationError as err:
        raise InvalidSpec(_problems(err, "")) from None
