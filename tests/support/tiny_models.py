"""The runtime tests' checkpoints: tiny random models written by radix_runtime.tiny_model, each
set of arguments once per session (tests/conftest.py registers the fixtures)."""
from __future__ import annotations

from pathlib import Path

import pytest

from radix_runtime.tiny_model import write_tiny_model

ARCHS = ("llama", "qwen2", "qwen3")  # untied LM head; tied + qkv bias; tied + q/k norm


class TinyModels:
    def __init__(self, root: Path):
        self.root = root
        self._written: dict[tuple, Path] = {}

    def get(self, arch: str = "llama", **kw) -> Path:
        """The checkpoint for write_tiny_model(arch=arch, **kw); the seed defaults to the arch's
        index in ARCHS, so the three default checkpoints differ."""
        kw.setdefault("seed", ARCHS.index(arch))
        key = (arch, *sorted((k, repr(v)) for k, v in kw.items()))
        if key not in self._written:
            out = self.root / f"{arch}-{len(self._written)}"
            self._written[key] = Path(write_tiny_model(str(out), arch=arch, **kw))
        return self._written[key]

    def __getitem__(self, arch: str) -> Path:
        return self.get(arch)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_model(tiny_models) -> Path:
    """The default checkpoint (llama) most tests serve."""
    return tiny_models["llama"]


# A LLaVA-style chat template (llava-hf's shape): content parts in order, "<image>" for images.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def write_tiny_llava(out_dir: Path, seed: int = 0, image_size: int = 32, patch_size: int = 8,
                     strategy: str = "default") -> Path:
    """A random-weight LlavaForConditionalGeneration (tiny CLIP tower + Llama) and its
    LlavaProcessor (CLIPImageProcessor + our BPE tokenizer with an <image> token), all written
    by HF transformers' save_pretrained."""
    import torch
    from tokenizers import AddedToken
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor,
                              PreTrainedTokenizerFast)

    from radix_runtime.tiny_model import build_tokenizer

    tok = build_tokenizer()
    tok.add_special_tokens([AddedToken("<image>", special=True, normalized=False)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=image_size, patch_size=patch_size,
                              projection_dim=32)
    text = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=1024, bos_token_id=fast.bos_token_id,
                       eos_token_id=[fast.eos_token_id, fast.convert_tokens_to_ids("<|im_end|>")],
                       pad_token_id=fast.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=fast.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy=strategy, vision_feature_layer=-2,
                         image_seq_length=(image_size // patch_size) ** 2)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():  # wider than HF's init (std 0.02), so greedy tokens depend on the image
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 1.0 if "embed_tokens" in name else 0.25)
    model.save_pretrained(out_dir)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=fast,
                               patch_size=patch_size, vision_feature_select_strategy=strategy,
                               num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)
    return Path(out_dir)


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    return write_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))
