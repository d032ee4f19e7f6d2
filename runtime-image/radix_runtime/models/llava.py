"""LLaVA-style vision-language models (HF `LlavaForConditionalGeneration`): a CLIP or SigLIP vision
tower, a two-layer projector, and a Llama-family language model (models/llama.py).

The language model runs exactly as a text-only one; `encode_images` turns pixel values into one
embedding per image token (HF's `get_image_features`: the tower's `vision_feature_layer` hidden
states, the CLS token dropped under the "default" select strategy, then the projector), and the
runner writes those over the image tokens' embeddings (ForwardBatch.mm_index / mm_embeds).
Checkpoint names of both layouts load: transformers 4 / 5's `language_model.model.*`,
`vision_tower.*`, `multi_modal_projector.*`, and the `model.language_model.*` one.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.forward_batch import ForwardBatch
from ..parallel.group import current
from .llama import LlamaForCausalLM, ModelArgs
from .vision import VisionArgs, VisionTower, activation

# config.json omits a sub-config's defaults: those of HF's LlamaConfig / Qwen2Config / MistralConfig
_TEXT_DEFAULTS = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=32768,
                  rms_norm_eps=1e-6),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                    rms_norm_eps=1e-6, sliding_window=4096),
}
_TEXT_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}


def text_config(cfg: dict) -> dict:
    """The language model's config.json as models/llama.py reads it."""
    tc = dict(cfg.get("text_config") or {})
    mt = tc.get("model_type", "llama")
    if mt not in _TEXT_DEFAULTS:
        raise ValueError(f"unsupported LLaVA language model {mt!r} (have {sorted(_TEXT_DEFAULTS)})")
    tc = {**_TEXT_DEFAULTS[mt], **tc, "model_type": mt, "architectures": [_TEXT_ARCH[mt]]}
    rope = tc.get("rope_parameters") or {}  # transformers 5 writes RoPE settings here
    if "rope_theta" not in tc and "rope_theta" in rope:
        tc["rope_theta"] = rope["rope_theta"]
    if tc.get("rope_scaling") is None and rope.get("rope_type", "default") != "default":
        tc["rope_scaling"] = rope
    if "tie_word_embeddings" in cfg:
        tc["tie_word_embeddings"] = cfg["tie_word_embeddings"]
    return tc


class Projector(nn.Module):
    def __init__(self, vision_hidden: int, text_hidden: int, act: str, bias: bool):
        super().__init__()
        self.linear_1 = nn.Linear(vision_hidden, text_hidden, bias=bias)
        self.act = activation(act)
        self.linear_2 = nn.Linear(text_hidden, text_hidden, bias=bias)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class LlavaForConditionalGeneration(nn.Module):
    is_vision = True

    def __init__(self, cfg: dict, context_length: int | None = None):
        super().__init__()
        g = current()
        if g.tp_size * g.pp_size > 1:
            raise ValueError("vision-language models run with --tp-size 1 --pp-size 1 only")
        self.args = ModelArgs(text_config(cfg), context_length)
        self.vargs = VisionArgs(cfg.get("vision_config") or {})
        self.feature_layer = cfg.get("vision_feature_layer", -2)
        if not isinstance(self.feature_layer, int):
            raise ValueError("a list of vision_feature_layer values is not supported")
        self.strategy = cfg.get("vision_feature_select_strategy", "default")
        if self.strategy not in ("default", "full"):
            raise ValueError(f"unsupported vision_feature_select_strategy {self.strategy!r}")
        self.language_model = LlamaForCausalLM(self.args)
        self.vision_tower = VisionTower(self.vargs)
        self.multi_modal_projector = Projector(self.vargs.hidden_size, self.args.hidden_size,
                                               cfg.get("projector_hidden_act", "gelu"),
                                               cfg.get("multimodal_projector_bias", True))

    def forward(self, fb: ForwardBatch, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.language_model(fb, x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.language_model.logits(hidden)

    def attention_layers(self):
        return self.language_model.attention_layers()

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, C, H, W] -> [B, image tokens, text hidden]."""
        dtype = self.multi_modal_projector.linear_1.weight.dtype
        h = self.vision_tower.hidden_states(pixels.to(dtype), self.feature_layer)
        if self.strategy == "default":  # HF drops the first token (CLIP's CLS) for any tower
            h = h[:, 1:]
        return self.multi_modal_projector(h)

    def map_weight_name(self, name: str) -> tuple[str, object] | None:
        name = name.removeprefix("model.")  # transformers 5's in-memory layout
        for prefix, ours in (("vision_tower.", "vision_tower."),
                             ("multi_modal_projector.", "multi_modal_projector.")):
            if name.startswith(prefix):
                rest = VisionTower.map_weight_name(name[len(prefix):]) if ours == "vision_tower." \
                    else name[len(prefix):]
                return None if rest is None else (ours + rest, None)
        if name.startswith("language_model."):
            name = name[len("language_model."):]
            if not name.startswith(("model.", "lm_head.")):  # model.language_model.layers...
                name = "model." + name
        mapped = self.language_model.map_weight_name(name)
        return None if mapped is None else ("language_model." + mapped[0], mapped[1])


VISION_ARCHITECTURES = {"LlavaForConditionalGeneration": LlavaForConditionalGeneration}
