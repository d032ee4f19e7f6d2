"""Image inputs of a request, for the routes: fetched and preprocessed off the event loop
(images.py), the prompt's image tokens expanded; 400s for images that cannot be used, too many
images, and images sent to a text-only model (docs/vision.md)."""
from __future__ import annotations

import asyncio

from radix_runtime import images
from radix_runtime.server.errors import bad_request
from radix_runtime.server.state import ServerState


def sources_of(image_data, n: int, batched: bool) -> list[list]:
    """SGLang's image_data -> the image sources of each of n prompts: for one prompt a source or
    a list of sources; for a batch one such entry (or null) per prompt."""
    if image_data is None or image_data == []:
        return [[] for _ in range(n)]
    if not batched:
        return [image_data if isinstance(image_data, list) else [image_data]]
    if not isinstance(image_data, list) or len(image_data) != n:
        raise bad_request(f"give one entry (an image, a list of images or null) per prompt "
                          f"({n} prompts)", "image_data")
    return [[] if d is None else d if isinstance(d, list) else [d] for d in image_data]


def _source(value, param: str) -> str:
    if isinstance(value, dict) and isinstance(value.get("url"), str):  # {"url": ...}
        return value["url"]
    if not isinstance(value, str):
        raise bad_request("an image is a URL, data URL, file path or base64 string", param)
    return value


async def load(state: ServerState, sources: list, param: str) -> list:
    """Pixel values of each image (in order); 400 naming `param.i` for the first bad one."""
    if not sources:
        return []
    spec = state.vision
    if spec is None:
        raise bad_request(f"the model {state.served_model_name!r} takes no image input", param)
    if len(sources) > images.MAX_IMAGES_PER_REQUEST:
        raise bad_request(f"{len(sources)} images; at most {images.MAX_IMAGES_PER_REQUEST} per "
                          "request", param)
    srcs = [_source(s, f"{param}.{i}") for i, s in enumerate(sources)]
    results = await asyncio.gather(*(asyncio.to_thread(images.load, s, spec) for s in srcs),
                                   return_exceptions=True)
    for i, r in enumerate(results):
        if isinstance(r, images.ImageError):
            raise bad_request(str(r), f"{param}.{i}")
        if isinstance(r, BaseException):
            raise r
    return results


def attach(state: ServerState, ids: list[int], pixels: list, param: str) -> tuple[list[int], list]:
    """The prompt with its image tokens expanded, and its images.ImageInputs."""
    if not pixels:
        if state.vision is not None and state.vision.image_token_id in ids:
            raise bad_request("the prompt has image tokens but no images were given "
                              "(image_data / image_url parts)", param)
        return ids, []
    try:
        return images.expand(ids, pixels, state.vision)
    except images.ImageError as e:
        raise bad_request(str(e), param) from None


def image_token(state: ServerState) -> str:
    """The image placeholder's text, for chat templates that take content as a string."""
    if state.vision is None:
        return ""
    return state.require_engine().tokenizer.id_to_token(state.vision.image_token_id) or ""
