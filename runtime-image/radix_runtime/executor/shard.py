"""This process's device, its part of the model and the KV pool sized for what memory is left."""
from __future__ import annotations

import glob
import os

import torch

from ..cache.kv_pool import KVPool
from ..core.config import EngineConfig
from ..hf_files import model_config
from ..models.loader import load_model, resolve_dtype
from ..parallel.group import current

_CPU_KV_BYTES, _CPU_KV_TOKENS = 2 << 30, 65536  # default KV pool on CPU: whichever is smaller


def choose_device(name: str, local_rank: int = 0) -> torch.device:
    """--device auto|cpu|cuda, or a device already chosen ("cuda:1"). A rank process takes the
    GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} needs GPU {local_rank}, this pod has "
                             f"{torch.cuda.device_count()} (tp x pp / nnodes ranks per pod)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def check_parallel(config: EngineConfig) -> None:
    g = current()
    if (config.tp_size, config.pp_size) != (g.tp_size, g.pp_size):
        raise ValueError(f"--tp-size {config.tp_size} --pp-size {config.pp_size} needs a process group "
                         "of that shape: start it with `python -m radix_runtime.launch_server`")


def _pool_size(cfg: EngineConfig, model, dtype, device, context_length: int,
               draft: tuple[int, int] = (0, 0)) -> int:
    """KV slots this rank can hold (its layers and KV heads only); the group takes the minimum.
    draft: (KV bytes per token, weight bytes) of a speculative draft model loaded next, whose pool
    has as many slots."""
    attn = model.attention_layers()
    per_token = KVPool.bytes_per_token(len(attn), attn[0].kvh, attn[0].d, dtype) + draft[0]
    if cfg.max_total_tokens:
        return cfg.max_total_tokens
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        frac = cfg.mem_fraction_static or 0.85
        budget = total * frac - (total - free) - draft[1]  # what the weights left of our share
        return max(int(budget / per_token), context_length)
    return max(min(_CPU_KV_BYTES // per_token, _CPU_KV_TOKENS), context_length)


def draft_footprint(path: str, config: EngineConfig, device: torch.device) -> tuple[int, int]:
    """(KV bytes per token, weight bytes) the STANDALONE draft at `path` will take."""
    c = model_config(path)
    heads = c["num_attention_heads"]
    dtype = resolve_dtype(config.dtype, c, device)
    per_token = KVPool.bytes_per_token(c["num_hidden_layers"], c.get("num_key_value_heads") or heads,
                                       c.get("head_dim") or c["hidden_size"] // heads, dtype)
    files = glob.glob(os.path.join(path, "*.safetensors"))
    return per_token, sum(os.path.getsize(f) for f in files)


def load_shard(config: EngineConfig, device: torch.device, draft_path: str | None = None):
    """This rank's part of the model and its KV pool -> (model, hf_config, dtype, pool). The pool
    leaves room for the draft model at draft_path (speculative decoding) and its KV."""
    check_parallel(config)
    hf_config = model_config(config.model_path)
    dtype = resolve_dtype(config.dtype, hf_config, device)
    model = load_model(config.model_path, hf_config, dtype, device, config.context_length)
    if current().pp_size > model.args.num_layers:
        raise ValueError(f"--pp-size {current().pp_size} exceeds the model's {model.args.num_layers} layers")
    context_length = config.context_length or model.args.max_position_embeddings
    draft = draft_footprint(draft_path, config, device) if draft_path else (0, 0)
    size = current().min_across(_pool_size(config, model, dtype, device, context_length, draft))
    attn = model.attention_layers()
    pool = KVPool(size, len(attn), attn[0].kvh, attn[0].d, dtype, device)
    return model, hf_config, dtype, pool


def load_draft(path: str, config: EngineConfig, device: torch.device, pool_size: int,
               context_length: int, vocab_size: int):
    """STANDALONE speculative decoding's draft model and its KV pool -> (model, pool). The pool
    has the target's size and slot numbering: slot s holds the draft's K/V of the same token as
    the target's slot s, so the page tables (and the radix tree's slots) serve both models."""
    hf_config = model_config(path)
    if hf_config["vocab_size"] != vocab_size:
        raise ValueError(f"--speculative-draft-model-path {path}: vocab_size {hf_config['vocab_size']} "
                         f"differs from the target's {vocab_size} (the draft must share its tokenizer)")
    dtype = resolve_dtype(config.dtype, hf_config, device)
    model = load_model(path, hf_config, dtype, device, context_length)
    attn = model.attention_layers()
    return model, KVPool(pool_size, len(attn), attn[0].kvh, attn[0].d, dtype, device)
