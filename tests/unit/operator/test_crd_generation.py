"""The committed CRD is exactly what the generator prints, and it is a structural schema that
carries the same rules and defaults as the pydantic models."""
from __future__ import annotations

import copy
import io
from contextlib import redirect_stdout
from typing import Any, Literal

import pytest
import yaml

from sglang_operator.api import SGLangDeployment, parse_spec
from sglang_operator.api.base import ApiModel
from sglang_operator.api.crd import build_crd, main, render_crd_yaml
from sglang_operator.api.schema import structural_schema
from tests.unit.operator.cases import REPO, drop_empty_lists

COMMITTED = REPO / "crds" / "sglangdeployments.sglangfleet.dev.yaml"


def _schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_matches_generator():
    assert COMMITTED.read_text() == render_crd_yaml(), "crds/ is stale: run `make crds`"


def test_write_is_idempotent_and_stdout_matches(tmp_path):
    assert main(["--write", str(tmp_path)]) == 0
    written = tmp_path / COMMITTED.name
    first, mtime = written.read_text(), written.stat().st_mtime_ns
    assert main(["--write", str(tmp_path)]) == 0
    assert written.read_text() == first and written.stat().st_mtime_ns == mtime
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([]) == 0
    assert out.getvalue() == first


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key in ("properties",):
            for name, sub in node.get(key, {}).items():
                yield from _walk(sub, f"{path}.{name}")
        if "items" in node:
            yield from _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural():
    for path, node in _walk(_schema()):
        assert "$ref" not in node and "title" not in node, path
        assert node.get("type") or node.get("x-kubernetes-int-or-string"), f"{path}: no type"
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:
            assert node["x-kubernetes-int-or-string"] and node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        assert "nullable" not in node and "default" not in node or node["default"] is not None, path


def test_only_free_form_fields_preserve_unknown_fields():
    free = {p for p, n in _walk(_schema()) if n.get("x-kubernetes-preserve-unknown-fields")}
    assert free == {".spec.scheduling.affinity", ".status.kopf"}


def _all_model_rules(model: type[ApiModel], seen: set) -> int:
    if model in seen:
        return 0
    seen.add(model)
    count = len(model.__dict__.get("rules", ()))
    for field in model.model_fields.values():
        for t in _model_types(field.annotation):
            count += _all_model_rules(t, seen)
    return count


def _model_types(annotation: Any):
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _model_types(arg)


def test_every_pydantic_model_rule_is_in_the_crd():
    cel = [v for _, n in _walk(_schema()) for v in n.get("x-kubernetes-validations", [])]
    messages = {v["message"] for v in cel}
    seen: set = set()
    assert _all_model_rules(SGLangDeployment, seen) >= 10
    for model in seen:
        for rule in model.__dict__.get("rules", ()):
            assert rule.message in messages, f"{model.__name__}: {rule.message}"
    assert all(v["rule"] and v["message"] for v in cel)


def test_printer_columns_and_subresources():
    version = build_crd()["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready", "Replicas", "Desired", "Queue", "Engine", "Status", "Router", "Age", "Model", "Message"]
    assert [c.get("priority", 0) for c in version["additionalPrinterColumns"]][-1] == 1  # Message: -o wide only
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.parallelism.dp",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert build_crd()["spec"]["names"]["shortNames"] == ["sgld"]


def apply_schema_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """What the API server's structural defaulting does (defaults, then recurse)."""
    if isinstance(obj, dict) and "properties" in schema:
        obj = dict(obj)
        for name, sub in schema["properties"].items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            if name in obj:
                obj[name] = apply_schema_defaults(sub, obj[name])
    elif isinstance(obj, list) and "items" in schema:
        obj = [apply_schema_defaults(schema["items"], x) for x in obj]
    return obj


def test_crd_defaults_equal_pydantic_defaults():
    spec_schema = _schema()["properties"]["spec"]
    for given in (
        {"model": {"path": "/m"}},
        {"model": {"path": "/m", "volume": {"hostPath": {"path": "/x"}}}, "autoscaling": {"scaleDown": {}}},
    ):
        by_server = apply_schema_defaults(spec_schema, given)
        by_pydantic = parse_spec(given).to_api()
        assert by_server == drop_empty_lists(by_pydantic)


def test_crd_yaml_has_no_anchors():
    text = COMMITTED.read_text()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text)["metadata"]["name"] == "sglangdeployments.sglangfleet.dev"


def test_converter_refuses_what_kubernetes_cannot_express():
    class Union(ApiModel):
        x: int | str  # a union without x-kubernetes-int-or-string

    with pytest.raises(ValueError, match="unions other than int-or-string"):
        structural_schema(Union)

    class Fine(ApiModel):
        """Doc."""

        mode: Literal["only"] = "only"
        """Single-value literal."""
        ratio: float | None = None
        """Optional number."""

    schema = structural_schema(Fine)
    assert schema["properties"]["mode"] == {"description": "Single-value literal.", "type": "string", "enum": ["only"], "default": "only"}
    assert schema["properties"]["ratio"] == {"description": "Optional number.", "type": "number"}
    assert "additionalProperties" not in schema and schema["description"] == "Doc."
