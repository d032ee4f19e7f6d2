"""Image inputs below the server: preprocessing equals HF's image processors, sources decode or fail
clearly, image tokens expand as LlavaProcessor's, cache keys follow the pixels, and the vision
towers equal HF's CLIP and SigLIP hidden states."""
from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from radix_runtime import images
from radix_runtime.chat_template import ChatTemplate
from radix_runtime.models.vision import VisionArgs, VisionTower
from radix_runtime.scheduler.multimodal import chunk_embeds, image_keys

CLIP = images.Preprocess(size={"shortest_edge": 32}, crop=(32, 32))
SIGLIP = images.Preprocess(size={"height": 24, "width": 24}, crop=None, resample=3,
                           mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _img(mode: str, size=(37, 61), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = rng.integers(0, 256, (size[0], size[1], channels), dtype=np.uint8)
    return Image.fromarray(a[..., 0] if channels == 1 else a, mode)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode, size", [("RGB", (37, 61)), ("RGBA", (70, 33)), ("L", (20, 20))])
def test_preprocess_equals_hf_image_processors(mode, size):
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    img = _img(mode, size)
    hf_clip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    hf_siglip = SiglipImageProcessor(size={"height": 24, "width": 24})
    for ours, hf in ((CLIP, hf_clip), (SIGLIP, hf_siglip)):
        expected = hf(img, return_tensors="np")["pixel_values"][0]
        got = images.preprocess(img, ours)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_vision_spec_reads_processor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        '{"size": {"shortest_edge": 336}, "crop_size": 336, "image_mean": [0.5, 0.5, 0.5]}')
    cfg = {"architectures": ["LlavaForConditionalGeneration"], "image_token_index": 32000,
           "vision_config": {"model_type": "clip_vision_model", "image_size": 336, "patch_size": 14}}
    spec = images.vision_spec(str(tmp_path), cfg)
    assert (spec.image_token_id, spec.tokens_per_image) == (32000, 576)  # llava-1.5: 24 x 24
    assert spec.preprocess.crop == (336, 336) and spec.preprocess.mean == (0.5, 0.5, 0.5)
    full = images.vision_spec(str(tmp_path), {**cfg, "vision_feature_select_strategy": "full"})
    assert full.tokens_per_image == 577  # CLS kept
    assert images.vision_spec(str(tmp_path), {"architectures": ["LlamaForCausalLM"]}) is None
    # transformers 5 writes processor_config.json; SigLIP's processor resizes without a crop
    (tmp_path / "processor_config.json").write_text(
        '{"image_processor": {"image_processor_type": "SiglipImageProcessor", '
        '"size": {"height": 384, "width": 384}}}')
    siglip = {**cfg, "vision_config": {"model_type": "siglip_vision_model", "image_size": 384,
                                       "patch_size": 14}, "vision_feature_select_strategy": "full"}
    spec = images.vision_spec(str(tmp_path), siglip)
    assert spec.preprocess.crop is None and spec.preprocess.size == {"height": 384, "width": 384}
    assert spec.tokens_per_image == 729  # 27 x 27 patches, no CLS


def test_sources_fetch_or_fail_clearly(tmp_path):
    data = _png(_img("RGB"))
    path = tmp_path / "a b.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    for source in (f"data:image/png;base64,{b64}", b64, str(path), f"file://{tmp_path}/a%20b.png"):
        assert images.fetch(source) == data
    for source, needle in ((f"data:image/png,{b64}", "must be base64"), ("hello there", "not an image"),
                           (str(tmp_path / "none.png"), "could not read"), ("", "non-empty")):
        with pytest.raises(images.ImageError, match=needle):
            images.fetch(source)
    with pytest.raises(images.ImageError, match="cannot decode"):
        images.decode(b"GIF89a but not really")


def test_expand_and_keys():
    spec = images.VisionSpec(image_token_id=9, tokens_per_image=3, preprocess=CLIP)
    a, b = np.zeros((3, 2, 2), np.float32), np.ones((3, 2, 2), np.float32)
    ids, imgs = images.expand([1, 9, 5, 9, 6], [a, b], spec)
    assert ids == [1, 9, 9, 9, 5, 9, 9, 9, 6]
    assert [(i.offset, i.length) for i in imgs] == [(1, 3), (5, 3)]
    assert images.expand(ids, [a, b], spec)[0] == ids  # already expanded: kept
    keys = image_keys(ids, imgs)
    assert keys == [1, *[imgs[0].key] * 3, 5, *[imgs[1].key] * 3, 6]
    assert imgs[0].key < 0 and imgs[0].key != imgs[1].key
    assert images.image_key(a.copy()) == imgs[0].key  # the pixels decide, not the object
    with pytest.raises(images.ImageError, match="2 image token"):
        images.expand([1, 9, 9], [a], spec)
    with pytest.raises(images.ImageError, match="at most"):
        images.expand([9] * 17, [a] * 17, spec)


def test_chunk_embeds_slices_features_across_chunks():
    imgs = [images.ImageInput(2, 4, -1, np.zeros(1)), images.ImageInput(8, 4, -2, np.zeros(1))]
    calls = []

    def encode(pixels):
        calls.append(len(pixels))
        return [torch.arange(4.0)[:, None] + 10 * (len(calls) + k) for k in range(len(pixels))]

    r = SimpleNamespace(images=imgs, image_embeds={})
    first = chunk_embeds(r, 0, 4, encode)  # positions 0..3: the first image's first 2 tokens
    assert [(j, e.flatten().tolist()) for j, e in first] == [(2, [10.0, 11.0])]
    second = chunk_embeds(r, 4, 6, encode)  # 4..9: its last 2, the second image's first 2
    assert [(j, e.flatten().tolist()) for j, e in second] == [(0, [12.0, 13.0]), (4, [20.0, 21.0])]
    assert calls == [1, 1] and list(r.image_embeds) == [1]  # each image encoded once


def test_template_content_parts_detection():
    assert ChatTemplate("{% for c in message['content'] %}{% endfor %}", {}, "t").takes_content_parts
    assert not ChatTemplate("{{ message['content'] }}", {}, "t").takes_content_parts


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_vision_tower_equals_hf_hidden_states(kind):
    from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                 image_size=24, patch_size=6)
    cfg, cls = ((CLIPVisionConfig(**small), CLIPVisionModel) if kind == "clip"
                else (SiglipVisionConfig(**small), SiglipVisionModel))
    hf = cls(cfg).eval()
    ours = VisionTower(VisionArgs(cfg.to_dict()))
    state = {}
    for name, t in hf.state_dict().items():
        mapped = VisionTower.map_weight_name(name)
        if mapped is not None:
            state[mapped] = t
    ours.load_state_dict(state)
    pixels = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        hs = hf(pixel_values=pixels, output_hidden_states=True).hidden_states
        for layer in (-2, -1, 0, 1):
            torch.testing.assert_close(ours.hidden_states(pixels, layer), hs[layer], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("strategy", ["default", "full"])
def test_llava_with_siglip_tower_loads_and_encodes_as_hf(tmp_path, strategy):
    """A LLaVA checkpoint with a SigLIP tower, written by transformers: our loader reads it and our
    image features (and their count, which the prompt's image tokens must match) equal HF's."""
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

    from radix_runtime.hf_files import model_config
    from radix_runtime.models.loader import load_model

    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, image_size=24, patch_size=6)
    text = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    hf = LlavaForConditionalGeneration(LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=63,
        vision_feature_select_strategy=strategy)).eval()
    hf.save_pretrained(tmp_path)
    cfg = model_config(str(tmp_path))
    ours = load_model(str(tmp_path), cfg, torch.float32, torch.device("cpu"))
    pixels = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        expected = hf.model.get_image_features(
            pixel_values=pixels, vision_feature_layer=-2,
            vision_feature_select_strategy=strategy).pooler_output[0]
        got = ours.encode_images(pixels)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert images.vision_spec(str(tmp_path), cfg).tokens_per_image == expected.shape[0]
