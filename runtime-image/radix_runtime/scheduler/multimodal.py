"""Image tokens in the scheduler (SGLang's approach: image hashes as pad values in the token keys).

A request's image tokens all carry one placeholder id, so as radix-tree keys they would let two
different images share KV. `image_keys` replaces each image's tokens by that image's key (a hash
of its pixels, images.image_key): the same image matches its cached KV, a different one never
does. `chunk_embeds` gives the image features a prefill chunk needs, running the vision tower once
per image when a chunk first reaches it (a cached prefix that covers an image skips it).
"""
from __future__ import annotations

from typing import Callable

import torch


def image_keys(input_ids: list[int], images) -> list[int]:
    keys = list(input_ids)
    for im in images:
        keys[im.offset:im.offset + im.length] = [im.key] * im.length
    return keys


def chunk_embeds(r, start: int, n: int, encode: Callable[[list], list[torch.Tensor]]
                 ) -> list[tuple[int, torch.Tensor]]:
    """(index in the chunk, features) for the image tokens among prompt positions [start, start+n)
    of request r; `encode` is the runner's encode_images. Features of images the prefill has
    passed are dropped (a retracted request recomputes them)."""
    out, todo = [], []
    for i, im in enumerate(r.images):
        lo, hi = max(start, im.offset), min(start + n, im.offset + im.length)
        if lo < hi and i not in r.image_embeds:
            todo.append(i)
    if todo:
        for i, feats in zip(todo, encode([r.images[i].pixel_values for i in todo])):
            r.image_embeds[i] = feats
    for i, im in enumerate(r.images):
        lo, hi = max(start, im.offset), min(start + n, im.offset + im.length)
        if lo < hi:
            out.append((lo - start, r.image_embeds[i][lo - im.offset:hi - im.offset]))
        if start + n >= im.offset + im.length:
            r.image_embeds.pop(i, None)
    return out
