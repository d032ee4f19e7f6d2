"""Every example renders to its committed golden file. Regenerate with UPDATE_GOLDEN=1."""
from __future__ import annotations

import os

import pytest
import yaml

from sglang_operator.api import parse_deployment
from sglang_operator.render import render_all
from tests.unit.operator.cases import EXAMPLES, GOLDEN, load_example

NAMESPACE = "serving"


def rendered_yaml(path) -> str:
    d = parse_deployment(load_example(path))
    return yaml.safe_dump_all(render_all(d.metadata.name, NAMESPACE, d.spec), sort_keys=False, width=120)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_golden(path):
    golden = GOLDEN / f"{path.stem}.yaml"
    text = rendered_yaml(path)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"no golden for {path.name}: run with UPDATE_GOLDEN=1"
    assert golden.read_text() == text, f"{golden.name} differs from the rendering (UPDATE_GOLDEN=1 to accept)"


def test_no_stale_goldens():
    assert {p.stem for p in GOLDEN.glob("*.yaml")} == {p.stem for p in EXAMPLES}
