"""Image inputs for vision-language models: what the checkpoint says about images (`VisionSpec`),
fetching and decoding them (data URLs, base64, files, http URLs; Pillow), the HF image
processor's preprocessing (CLIP/SigLIP: RGB, resize, center crop, rescale, normalize) and the
prompt's image tokens expanded as HF's LlavaProcessor expands them.

Each image gets a cache key from its preprocessed pixels (as SGLang's image hashes / pad values):
the scheduler keys the radix tree with it instead of the image's placeholder tokens, so two
different images never share KV and the same image always can. Pure functions, no torch.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass

import numpy as np

from .hf_files import read_json

MAX_IMAGES_PER_REQUEST = 16
MAX_IMAGE_BYTES = 32 << 20  # one encoded image, fetched or inline
MAX_IMAGE_PIXELS = 64 << 20  # decoded (Pillow's decompression-bomb guard)
FETCH_TIMEOUT_S = 10.0
VISION_ARCHITECTURES = ("LlavaForConditionalGeneration",)
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class ImageError(ValueError):
    """An image the request cannot use (the server answers 400)."""


@dataclass(frozen=True)
class ImageInput:
    """One preprocessed image of a request, where its tokens sit in the prompt."""

    offset: int  # first image token in the prompt
    length: int  # image tokens
    key: int  # radix-tree key of its tokens: from the pixels, never a real token id (< 0)
    pixel_values: np.ndarray  # [3, H, W] float32


@dataclass(frozen=True)
class Preprocess:
    """The HF image processor's settings (CLIPImageProcessor and SiglipImageProcessor read these)."""

    size: dict  # {"shortest_edge": n} or {"height": h, "width": w}
    crop: tuple[int, int] | None  # (height, width) of the center crop; None: no crop
    resample: int = 3  # PIL's code; 3 = bicubic
    rescale_factor: float = 1 / 255
    mean: tuple[float, ...] = _CLIP_MEAN
    std: tuple[float, ...] = _CLIP_STD
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    do_convert_rgb: bool = True


@dataclass(frozen=True)
class VisionSpec:
    image_token_id: int
    tokens_per_image: int
    preprocess: Preprocess


def _hw(v) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    return int(v["height"]), int(v["width"])


def _processor_config(model_path: str) -> dict:
    """processor_config.json's image_processor (transformers 5), else preprocessor_config.json."""
    proc = read_json(os.path.join(model_path, "processor_config.json"))
    return proc.get("image_processor") or read_json(os.path.join(model_path, "preprocessor_config.json"))


def vision_spec(model_path: str, hf_config: dict) -> VisionSpec | None:
    """None for a text-only model."""
    arch = (hf_config.get("architectures") or [""])[0]
    if arch not in VISION_ARCHITECTURES:
        return None
    vc = hf_config.get("vision_config") or {}
    image_size, patch = vc.get("image_size", 224), vc.get("patch_size", 32)
    ip = _processor_config(model_path)
    size = ip.get("size") or {"shortest_edge": image_size}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    # CLIP's processor center-crops by default, SigLIP's has no crop
    crops = ip.get("do_center_crop", "Siglip" not in ip.get("image_processor_type", ""))
    crop = _hw(ip.get("crop_size") or image_size) if crops else None
    pre = Preprocess(size=dict(size), crop=crop, resample=ip.get("resample", 3),
                     rescale_factor=ip.get("rescale_factor", 1 / 255),
                     mean=tuple(ip.get("image_mean", _CLIP_MEAN)),
                     std=tuple(ip.get("image_std", _CLIP_STD)),
                     do_resize=ip.get("do_resize", True), do_rescale=ip.get("do_rescale", True),
                     do_normalize=ip.get("do_normalize", True),
                     do_convert_rgb=ip.get("do_convert_rgb", True))
    # LlavaProcessor: one token per patch, plus the CLS token unless the "default" strategy
    # drops it (a SigLIP tower has none: "full")
    tokens = (image_size // patch) ** 2
    if vc.get("model_type", "clip_vision_model") == "clip_vision_model":
        tokens += 1
    if hf_config.get("vision_feature_select_strategy", "default") == "default":
        tokens -= 1
    token_id = hf_config.get("image_token_index", hf_config.get("image_token_id", 32000))
    return VisionSpec(token_id, tokens, pre)


# ----------------------------------------------------------------------------- fetch and decode


def _read_limited(f, what: str) -> bytes:
    data = f.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{what} is larger than {MAX_IMAGE_BYTES >> 20} MiB")
    return data


def fetch(source: str) -> bytes:
    """The encoded bytes of an image given as a data URL, an http(s) URL, a file path or
    file:// URL, or bare base64 (SGLang's image_data accepts each). Blocking (run it in a thread)."""
    if not isinstance(source, str) or not source:
        raise ImageError("an image must be a non-empty string (URL, data URL, path or base64)")
    if source.startswith("data:"):
        head, sep, payload = source.partition(",")
        if not sep or ";base64" not in head:
            raise ImageError("a data URL image must be base64 (data:image/...;base64,...)")
        return _b64(payload)
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT_S) as r:
                return _read_limited(r, f"the image at {source}")
        except OSError as e:
            raise ImageError(f"could not fetch {source}: {e}") from None
    path = urllib.parse.unquote(source[len("file://"):]) if scheme == "file" else source
    if os.path.isabs(path) or scheme == "file":
        try:
            with open(path, "rb") as f:
                return _read_limited(f, f"the image file {path}")
        except OSError as e:
            raise ImageError(f"could not read the image file {path}: {e.strerror}") from None
    return _b64(source)


def _b64(payload: str) -> bytes:
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ImageError(f"the image is larger than {MAX_IMAGE_BYTES >> 20} MiB")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("not an image URL, data URL, absolute file path or base64 data") from None


def decode(data: bytes):
    """Encoded bytes -> a loaded PIL image."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"the image is too large to decode: {e}") from None
    except Exception as e:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ImageError(f"cannot decode the image ({type(e).__name__}: {e})") from None
    return img


# ----------------------------------------------------------------------------- preprocessing


def _to_rgb(img):
    """As HF's convert_to_rgb: transparency composited over white."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _resize_to(size: dict, h: int, w: int) -> tuple[int, int]:
    """HF's target (height, width): the short edge to shortest_edge (the long one scaled and
    truncated), or the given height and width."""
    if "shortest_edge" in size:
        s = int(size["shortest_edge"])
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(s * long / short)
        return (new_long, s) if w <= h else (s, new_long)
    return int(size["height"]), int(size["width"])


def preprocess(img, p: Preprocess) -> np.ndarray:
    """A PIL image -> pixel values [3, H, W] float32, as HF's PIL image processors compute them."""
    if p.do_convert_rgb:
        img = _to_rgb(img)
    if p.do_resize:
        h, w = _resize_to(p.size, img.height, img.width)
        img = img.resize((w, h), resample=p.resample)
    x = np.asarray(img)
    x = x[..., None] if x.ndim == 2 else x
    x = np.moveaxis(x, -1, 0)  # channels first
    if p.crop is not None:
        ch, cw = p.crop
        h, w = x.shape[1:]
        top, left = (h - ch) // 2, (w - cw) // 2
        if top >= 0 and left >= 0:
            x = x[:, top:top + ch, left:left + cw]
        else:  # smaller than the crop: centered on zeros
            out = np.zeros((x.shape[0], max(h, ch), max(w, cw)), x.dtype)
            t, l = (out.shape[1] - h) // 2, (out.shape[2] - w) // 2
            out[:, t:t + h, l:l + w] = x
            top, left = (out.shape[1] - ch) // 2, (out.shape[2] - cw) // 2
            x = out[:, top:top + ch, left:left + cw]
    x = x.astype(np.float64) * p.rescale_factor if p.do_rescale else x
    x = x.astype(np.float32)
    if p.do_normalize:
        mean = np.asarray(p.mean, np.float32)[:, None, None]
        std = np.asarray(p.std, np.float32)[:, None, None]
        x = (x - mean) / std
    return np.ascontiguousarray(x, dtype=np.float32)


def image_key(pixels: np.ndarray) -> int:
    """The radix-tree key of an image's tokens: a 63-bit hash of its pixels, negative so that it
    never equals a token id."""
    digest = hashlib.sha256(pixels.tobytes()).digest()
    return -1 - (int.from_bytes(digest[:8], "little") >> 1)


def load(source: str, spec: VisionSpec) -> np.ndarray:
    """fetch + decode + preprocess (blocking)."""
    return preprocess(decode(fetch(source)), spec.preprocess)


# ----------------------------------------------------------------------------- prompt tokens


def expand(ids: list[int], pixels: list[np.ndarray], spec: VisionSpec) -> tuple[list[int], list[ImageInput]]:
    """The prompt with each image token repeated tokens_per_image times (as LlavaProcessor
    expands "<image>"), and where each image's tokens are. A prompt already expanded (n x
    tokens_per_image image tokens) is taken as it is."""
    n, per, tid = len(pixels), spec.tokens_per_image, spec.image_token_id
    if n > MAX_IMAGES_PER_REQUEST:
        raise ImageError(f"{n} images; at most {MAX_IMAGES_PER_REQUEST} per request")
    found = ids.count(tid)
    if found == n * per and per != 1:
        out = list(ids)
    elif found == n:
        out = []
        for t in ids:
            out.extend([tid] * per if t == tid else [t])
    else:
        raise ImageError(f"the prompt has {found} image token(s) (id {tid}) for {n} image(s): "
                         "put one image token where each image goes")
    images, i = [], 0
    for px in pixels:
        i = out.index(tid, i)
        images.append(ImageInput(i, per, image_key(px), px))
        i += per
    return out, images
