"""One config-driven decoder for the Llama family: Llama 2/3, Mistral, Qwen2 (qkv bias), Qwen3
(q/k RMSNorm per head). GQA, SwiGLU MLP, RoPE with scaling, tied or untied embeddings.

forward() takes a flat token batch (a mix of prefill chunks and decode tokens) and returns the final
hidden states; logits are computed by the runner only for the rows it samples from. Under tensor
parallelism each rank builds its shard (see layers/linear.py); under pipeline parallelism a stage
builds only its layer range (the others are empty placeholders, so parameter names stay those of
the checkpoint), the first stage the embedding and the last the final norm and LM head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.forward_batch import ForwardBatch
from ..parallel.group import current
from ..layers.linear import (MergedColumnParallelLinear, ParallelLMHead, QKVParallelLinear,
                             RowParallelLinear, VocabParallelEmbedding, parallel_logits)
from ..layers.norm import RMSNorm
from ..layers.rotary import RotaryEmbedding


class ModelArgs:
    """The config.json fields the decoder reads, with the defaults of HF's Llama config."""

    def __init__(self, cfg: dict, context_length: int | None = None):
        self.arch = (cfg.get("architectures") or ["LlamaForCausalLM"])[0]
        self.model_type = cfg.get("model_type", "llama")
        self.vocab_size = cfg["vocab_size"]
        self.hidden_size = cfg["hidden_size"]
        self.intermediate_size = cfg["intermediate_size"]
        self.num_layers = cfg["num_hidden_layers"]
        self.num_heads = cfg["num_attention_heads"]
        self.num_kv_heads = cfg.get("num_key_value_heads") or self.num_heads
        self.head_dim = cfg.get("head_dim") or self.hidden_size // self.num_heads
        self.rms_norm_eps = cfg.get("rms_norm_eps", 1e-6)
        self.rope_theta = cfg.get("rope_theta", 10000.0)
        self.rope_scaling = cfg.get("rope_scaling")
        self.max_position_embeddings = cfg.get("max_position_embeddings", 4096)
        # --context-length may exceed the trained length (a user's choice, as in SGLang)
        self.rope_table_len = max(self.max_position_embeddings, context_length or 0)
        self.tie_word_embeddings = cfg.get("tie_word_embeddings", False)
        is_qwen2 = self.model_type == "qwen2" or self.arch.startswith("Qwen2")
        self.attention_bias = cfg.get("attention_bias", False) or is_qwen2
        self.qk_norm = self.model_type == "qwen3" or self.arch.startswith("Qwen3")
        self.layer_windows = _layer_windows(cfg, self.model_type, self.num_layers)
        act = cfg.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise ValueError(f"unsupported hidden_act {act!r}")


def _layer_windows(cfg: dict, model_type: str, num_layers: int) -> list[int | None]:
    """Sliding-window size per layer (None: full attention), as HF decides it: an explicit
    `layer_types`, else Mistral's global `sliding_window`, else Qwen's use_sliding_window for the
    layers from max_window_layers on."""
    window = cfg.get("sliding_window")
    if not window:
        return [None] * num_layers
    if cfg.get("layer_types"):
        return [window if t == "sliding_attention" else None for t in cfg["layer_types"]]
    if model_type == "mistral":
        return [window] * num_layers
    if cfg.get("use_sliding_window"):
        first = cfg.get("max_window_layers", num_layers)
        return [window if i >= first else None for i in range(num_layers)]
    return [None] * num_layers


class Attention(nn.Module):
    def __init__(self, a: ModelArgs, layer: int, rotary: RotaryEmbedding, kv_index: int):
        super().__init__()
        self.layer, self.rotary = kv_index, rotary  # layer: this rank's KV pool index
        self.window = a.layer_windows[layer]
        self.qkv_proj = QKVParallelLinear(a.hidden_size, a.head_dim, a.num_heads, a.num_kv_heads, a.attention_bias)
        self.h, self.kvh, self.d = self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads, a.head_dim
        self.o_proj = RowParallelLinear(a.num_heads * a.head_dim, a.hidden_size)
        if a.qk_norm:
            self.q_norm = RMSNorm(a.head_dim, a.rms_norm_eps)
            self.k_norm = RMSNorm(a.head_dim, a.rms_norm_eps)
        else:
            self.q_norm = self.k_norm = None
        self.backend = None  # set by the model runner once the KV pool exists

    def forward(self, x, positions, fb: ForwardBatch):
        return self.out(self.attend(*self.project(x, positions), fb))

    # forward's three parts: the compiled decode (executor/decode_graph.py) runs project and out
    # compiled and attend eager between them
    def project(self, x, positions):
        """x [T, hidden] -> q [T, H, D], k, v [T, KVH, D], rotary applied."""
        qkv = self.qkv_proj(x)
        q, k, v = qkv.split([self.h * self.d, self.kvh * self.d, self.kvh * self.d], dim=-1)
        q, k, v = q.view(-1, self.h, self.d), k.view(-1, self.kvh, self.d), v.view(-1, self.kvh, self.d)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return (*self.rotary(positions, q, k), v)

    def attend(self, q, k, v, fb: ForwardBatch):
        return self.backend.forward(q, k, v, self.layer, fb, self.window)

    def out(self, o):
        return self.o_proj(o.reshape(-1, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.gate_up_proj = MergedColumnParallelLinear(a.hidden_size, [a.intermediate_size] * 2)
        self.inter = self.gate_up_proj.local_sizes[0]
        self.down_proj = RowParallelLinear(a.intermediate_size, a.hidden_size)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).split(self.inter, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, a: ModelArgs, layer: int, rotary: RotaryEmbedding, kv_index: int):
        super().__init__()
        self.self_attn = Attention(a, layer, rotary, kv_index)
        self.mlp = MLP(a)
        self.input_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)

    def forward(self, x, positions, fb):
        return self.finish(x, self.self_attn.attend(*self.start(x, positions), fb))

    def start(self, x, positions):
        """The layer up to its attention: x -> q, k, v."""
        return self.self_attn.project(self.input_layernorm(x), positions)

    def finish(self, x, o):
        """The layer after its attention: o [T, H, D] -> the layer's output."""
        x = x + self.self_attn.out(o)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        rotary = RotaryEmbedding(a.head_dim, a.max_position_embeddings, a.rope_theta, a.rope_scaling,
                                 a.rope_table_len)
        g = current()
        self.first, self.last = g.is_first_stage, g.is_last_stage
        self.start, self.end = g.layer_range(a.num_layers)
        self.embed_tokens = VocabParallelEmbedding(a.vocab_size, a.hidden_size) if self.first else None
        self.layers = nn.ModuleList(
            DecoderLayer(a, i, rotary, i - self.start) if self.start <= i < self.end else nn.Identity()
            for i in range(a.num_layers))
        self.norm = RMSNorm(a.hidden_size, a.rms_norm_eps) if self.last else None

    def forward(self, fb: ForwardBatch, x: torch.Tensor | None = None):
        """x: the previous stage's hidden states (None on the first stage)."""
        if self.first:
            x = self.embed_tokens(fb.input_ids)
            if fb.mm_index is not None:  # image features over their tokens' embeddings
                x = x.index_copy(0, fb.mm_index, fb.mm_embeds.to(x.dtype))
        for layer in self.layers[self.start:self.end]:
            x = layer(x, fb.positions, fb)
        return self.norm(x) if self.last else x


class LlamaForCausalLM(nn.Module):
    # checkpoint name fragment -> (fused param name fragment, shard id)
    stacked_params = [
        ("q_proj", "qkv_proj", "q"), ("k_proj", "qkv_proj", "k"), ("v_proj", "qkv_proj", "v"),
        ("gate_proj", "gate_up_proj", 0), ("up_proj", "gate_up_proj", 1),
    ]

    def __init__(self, a: ModelArgs):
        super().__init__()
        self.args = a
        self.model = m = LlamaModel(a)
        # tied weights: the embedding doubles as LM head, unless PP puts them on different stages
        own_head = m.last and not (a.tie_word_embeddings and m.first)
        self.lm_head = ParallelLMHead(a.vocab_size, a.hidden_size) if own_head else None

    def forward(self, fb: ForwardBatch, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(fb, x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        w = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return parallel_logits(hidden, w, self.args.vocab_size)

    def attention_layers(self):
        m = self.model
        return [layer.self_attn for layer in m.layers[m.start:m.end]]

    def map_weight_name(self, name: str) -> tuple[str, object] | None:
        """Checkpoint tensor name -> (our parameter name, shard id), None to skip it (not ours:
        rotary caches, or weights of another pipeline stage)."""
        m = self.model
        if "rotary_emb.inv_freq" in name:
            return None
        if name == "lm_head.weight":
            return (name, None) if self.lm_head is not None and not self.args.tie_word_embeddings else None
        if name == "model.embed_tokens.weight":
            if m.first:
                return name, None
            tied_here = self.args.tie_word_embeddings and self.lm_head is not None
            return ("lm_head.weight", None) if tied_here else None
        if name.startswith("model.norm.") and not m.last:
            return None
        if name.startswith("model.layers."):
            i = int(name.split(".")[2])
            if not m.start <= i < m.end:
                return None
        for ckpt, fused, shard in self.stacked_params:
            if f".{ckpt}." in name:
                return name.replace(ckpt, fused), shard
        return name, None


ARCHITECTURES = {
    name: LlamaForCausalLM
    for name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
}
