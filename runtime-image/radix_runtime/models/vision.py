"""Vision towers of LLaVA-style models: CLIP's and SigLIP's ViT (HF `CLIPVisionModel`,
`SiglipVisionModel`), parameter names as in their checkpoints (less the `vision_model.` prefix).

`hidden_states(pixels, layer)` returns what HF's `hidden_states[layer]` holds: index 0 is the
embedding output (after CLIP's pre-layernorm), index i the output of encoder layer i; negative
indices count from the end, so -2 (LLaVA's default) is the penultimate layer's output. Layers past
the one asked for are not run. Replicated on every rank (no tensor parallelism: towers are small).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# config.json defaults of HF's CLIPVisionConfig / SiglipVisionConfig (config.json omits defaults)
DEFAULTS = {
    "clip_vision_model": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                              num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5),
    "siglip_vision_model": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, num_channels=3, image_size=224,
                                patch_size=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
}


def activation(name: str):
    acts = {"quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
            "gelu": F.gelu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
            "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu, "silu": F.silu}
    if name not in acts:
        raise ValueError(f"unsupported activation {name!r}")
    return acts[name]


class VisionArgs:
    def __init__(self, cfg: dict):
        self.model_type = cfg.get("model_type", "clip_vision_model")
        if self.model_type not in DEFAULTS:
            raise ValueError(f"unsupported vision tower {self.model_type!r} (have {sorted(DEFAULTS)})")
        c = {**DEFAULTS[self.model_type], **cfg}
        self.hidden_size, self.intermediate_size = c["hidden_size"], c["intermediate_size"]
        self.num_layers, self.num_heads = c["num_hidden_layers"], c["num_attention_heads"]
        self.num_channels = c["num_channels"]
        self.image_size, self.patch_size = c["image_size"], c["patch_size"]
        self.act, self.eps = c["hidden_act"], c["layer_norm_eps"]
        self.clip = self.model_type == "clip_vision_model"  # CLS token, pre-layernorm, no conv bias
        self.num_patches = (self.image_size // self.patch_size) ** 2


class Embeddings(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.clip = a.clip
        if a.clip:
            self.class_embedding = nn.Parameter(torch.empty(a.hidden_size))
        self.patch_embedding = nn.Conv2d(a.num_channels, a.hidden_size, a.patch_size, a.patch_size,
                                         bias=not a.clip)
        self.position_embedding = nn.Embedding(a.num_patches + a.clip, a.hidden_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        if self.clip:
            x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1)
        return x + self.position_embedding.weight[None]


class SelfAttention(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.h = a.num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            nn.Linear(a.hidden_size, a.hidden_size) for _ in range(4))

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.h, d // self.h).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        o = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(o.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.act = activation(a.act)
        self.fc1 = nn.Linear(a.hidden_size, a.intermediate_size)
        self.fc2 = nn.Linear(a.intermediate_size, a.hidden_size)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.self_attn = SelfAttention(a)
        self.layer_norm1 = nn.LayerNorm(a.hidden_size, eps=a.eps)
        self.mlp = MLP(a)
        self.layer_norm2 = nn.LayerNorm(a.hidden_size, eps=a.eps)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(a) for _ in range(a.num_layers))


class VisionTower(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.args = a
        self.embeddings = Embeddings(a)
        self.pre_layrnorm = nn.LayerNorm(a.hidden_size, eps=a.eps) if a.clip else None  # HF's spelling
        self.encoder = Encoder(a)

    def hidden_states(self, pixels: torch.Tensor, layer: int) -> torch.Tensor:
        """HF's hidden_states[layer] for pixels [B, C, H, W] -> [B, tokens, hidden]."""
        n = self.args.num_layers
        stop = layer % (n + 1)
        if not -(n + 1) <= layer <= n:
            raise ValueError(f"vision_feature_layer {layer} is outside the tower's {n} layers")
        x = self.embeddings(pixels)
        if self.pre_layrnorm is not None:
            x = self.pre_layrnorm(x)
        for blk in self.encoder.layers[:stop]:
            x = blk(x)
        return x

    @staticmethod
    def map_weight_name(name: str) -> str | None:
        """A tower tensor's name (prefix removed) -> ours; None for the pooling parts LLaVA does
        not use (post_layernorm, SigLIP's attention-pool head)."""
        name = name.removeprefix("vision_model.")
        if name.startswith(("post_layernorm.", "head.")) or name.endswith("position_ids"):
            return None
        return name
