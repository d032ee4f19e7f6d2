"""Load an HF-format model directory: *.safetensors (single or sharded with an index) into the
architecture config.json names; the dtype it runs in; its EOS ids. Prints progress per file since
big checkpoints take minutes. Under tensor/pipeline parallelism the model skips other stages'
weights and reads only its shard."""
from __future__ import annotations

import glob
import os
import sys
import time

import torch

from ..core.config import DTYPES
from ..hf_files import read_json
from ..layers.linear import read_all, shape_of
from ..layers.rotary import RotaryEmbedding
from .llama import ARCHITECTURES, ModelArgs
from .llava import VISION_ARCHITECTURES


def resolve_dtype(name: str, hf_config: dict, device: torch.device) -> torch.dtype:
    """--dtype (aliases already resolved by EngineConfig); auto: the checkpoint's, bf16 for fp32."""
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cpu":
        return torch.float32  # bf16 matmuls on CPU are slow and less exact
    d = hf_config.get("torch_dtype") or hf_config.get("dtype") or "bfloat16"
    return getattr(torch, d) if d in DTYPES and d != "float32" else torch.bfloat16


def eos_token_ids(model_path: str, hf_config: dict) -> set[int]:
    """config.json and generation_config.json may each give an int or a list."""
    out: set[int] = set()
    for cfg in (hf_config, read_json(os.path.join(model_path, "generation_config.json"))):
        e = cfg.get("eos_token_id")
        out.update([e] if isinstance(e, int) else (e or []))
    return out


def _log(msg: str) -> None:
    print(f"[radix_runtime] {msg}", file=sys.stderr, flush=True)


def _weight_files(path: str) -> list[str]:
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(read_json(index)["weight_map"].values()))
        return [os.path.join(path, f) for f in files]
    files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {path}")
    return files


def _load_whole(param, loaded, shard_id=None):
    """Parameters of modules without a weight_loader (norms) are not sharded."""
    assert shard_id is None and list(param.shape) == shape_of(loaded), (param.shape, shape_of(loaded))
    param.data.copy_(read_all(loaded))


def load_model(model_path: str, hf_config: dict, dtype: torch.dtype, device: torch.device,
               context_length: int | None = None):
    """The model config.json (`hf_config`) describes, its weights read from `model_path`."""
    from safetensors import safe_open

    arch = (hf_config.get("architectures") or ["LlamaForCausalLM"])[0]
    if arch in VISION_ARCHITECTURES:  # its language model's args come from text_config
        cls, build_args = VISION_ARCHITECTURES[arch], (hf_config, context_length)
    else:
        args = ModelArgs(hf_config, context_length)
        cls, build_args = ARCHITECTURES.get(args.arch), (args,)
    if cls is None:
        known = sorted([*ARCHITECTURES, *VISION_ARCHITECTURES])
        raise ValueError(f"unsupported architecture {arch!r} (have {known})")
    # build on the meta device and allocate once in the target dtype (no float32 copy of a
    # large model on the way); every parameter is then filled from the checkpoint
    with torch.device("meta"):
        model = cls(*build_args)
    model = model.to(dtype).to_empty(device=device).eval()
    for m in model.modules():
        if isinstance(m, RotaryEmbedding):
            m.to_device(device)
    params = dict(model.named_parameters())
    loaded: set[str] = set()
    files = _weight_files(model_path)
    t0 = time.monotonic()
    for i, file in enumerate(files):
        with safe_open(file, framework="pt", device="cpu") as f:
            for name in f.keys():
                mapped = model.map_weight_name(name)
                if mapped is None:
                    continue
                pname, shard = mapped
                if pname not in params:
                    raise KeyError(f"unexpected weight {name} in {os.path.basename(file)}")
                p = params[pname]
                owner = model.get_submodule(pname.rpartition(".")[0])
                loader = getattr(owner, "weight_loader", None) or _load_whole
                # a lazy slice: sharded layers read only their part; copy_ converts dtype/device
                loader(p, f.get_slice(name), shard)
                loaded.add(pname)
        _log(f"loaded weights {i + 1}/{len(files)} ({os.path.basename(file)}) "
             f"in {time.monotonic() - t0:.1f}s")
    missing = set(params) - loaded
    if missing:
        raise KeyError(f"weights missing from checkpoint: {sorted(missing)[:8]}")
    return model
