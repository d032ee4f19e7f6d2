"""The one reader of a checkpoint directory's JSON files (config.json, generation_config.json,
tokenizer_config.json, the safetensors index): a missing file reads as {}."""
from __future__ import annotations

import json
import os


def read_json(path: str | os.PathLike) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def model_config(model_path: str) -> dict:
    """config.json, which a model directory must have."""
    cfg = read_json(os.path.join(model_path, "config.json"))
    if not cfg:
        raise FileNotFoundError(f"{model_path}/config.json not found")
    return cfg
