"""Image inputs through the server, against HF transformers on a tiny LLaVA checkpoint that
transformers itself wrote (tests/support/tiny_models.py write_tiny_llava): the same greedy tokens
for /generate image_data and chat image_url parts; the same image again is served from the radix
cache, a different image with the same placeholder tokens never is; clear 400s (a text-only model
given images: test_errors_and_drain.py)."""
import base64
import functools
import http.server
import io
import threading

import httpx
import numpy as np
import pytest
import torch
from openai import OpenAI
from PIL import Image

pytestmark = pytest.mark.runtime  # starts real server processes

PROMPT = "<image>\nThe quick brown"
NEW = 8


def _image(seed: int, size=(40, 57)) -> Image.Image:
    """Non-square, so the processor's resize and center crop both matter."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def _data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def hf(tiny_llava):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava, dtype=torch.float32).eval()
    return AutoProcessor.from_pretrained(tiny_llava), model


def hf_generate(hf, img, text: str, add_special_tokens: bool = True) -> list[int]:
    processor, model = hf
    inputs = processor(images=img, text=text, return_tensors="pt",
                       add_special_tokens=add_special_tokens)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


@pytest.fixture
def http_dir(tmp_path):
    """tmp_path served over http on loopback: (directory, base URL)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def vlm(launch, tiny_llava, request):
    # 8-token prefill chunks: every prompt's 16 image tokens span chunks, so the feature slicing
    # across chunks is under the HF comparisons too
    server = launch(tiny_llava, "--chunked-prefill-size", "8", wait=False)
    request.getfixturevalue("hf")  # HF's model loads while the server starts
    return server.wait_ready()


def generate(server, text, image_data, **extra):
    return httpx.post(server.url + "/generate", timeout=60, json={
        "text": text, "image_data": image_data,
        "sampling_params": {"max_new_tokens": NEW, "temperature": 0}, **extra})


def test_generate_matches_hf_and_caches_per_image(vlm, hf, http_dir):
    tmp_path, base = http_dir
    a, b = _image(1), _image(2)
    first = generate(vlm, PROMPT, _data_url(a)).json()
    expected_a = hf_generate(hf, a, PROMPT)
    assert first["output_ids"] == expected_a
    plen = first["meta_info"]["prompt_tokens"]
    assert plen == 1 + 16 + 4  # BOS, the image's 16 tokens, the text
    assert first["meta_info"]["cached_tokens"] == 0

    # the same image again (as a file this time: the key is its pixels): all but the last token hit
    path = tmp_path / "a.png"
    a.save(path)
    again = generate(vlm, PROMPT, str(path)).json()
    assert again["output_ids"] == expected_a
    assert again["meta_info"]["cached_tokens"] == plen - 1

    # another image behind the same placeholder tokens (over http): only BOS is shared
    b.save(tmp_path / "b.jpg", quality=95)
    b = Image.open(tmp_path / "b.jpg")
    other = generate(vlm, PROMPT, base + "/b.jpg").json()
    assert other["meta_info"]["cached_tokens"] == 1
    assert other["output_ids"] == hf_generate(hf, b, PROMPT)


def test_extend_of_a_conversation_with_images_is_a_400(vlm):
    r = generate(vlm, PROMPT, _data_url(_image(8)), rid="with-image")
    assert r.status_code == 200
    r = httpx.post(vlm.url + "/extend", timeout=60, json={"rid": "with-image", "text": " more"})
    assert r.status_code == 400 and "cannot be extended" in r.json()["error"]["message"]


def test_batch_with_one_image_per_prompt(vlm, hf):
    a, b = _image(3), _image(4, size=(64, 48))
    r = generate(vlm, [PROMPT, PROMPT], [_data_url(a), _data_url(b)]).json()
    assert [x["output_ids"] for x in r] == [hf_generate(hf, a, PROMPT), hf_generate(hf, b, PROMPT)]


def test_chat_image_url_matches_hf(vlm, hf):
    img = _image(5)
    processor = hf[0]
    hf_messages = [{"role": "user", "content": [{"type": "image"},
                                                {"type": "text", "text": "What is in the picture?"}]}]
    text = processor.apply_chat_template(hf_messages, add_generation_prompt=True)
    expected = hf_generate(hf, img, text, add_special_tokens=False)  # the template is the prompt
    client = OpenAI(base_url=vlm.url + "/v1", api_key="none")
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _data_url(img)}},
        {"type": "text", "text": "What is in the picture?"}]}]
    r = client.chat.completions.create(model="m", messages=messages, max_tokens=NEW, temperature=0)
    tok = processor.tokenizer
    assert r.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)
    # the vision route is the same handler, and the repeated image is cached
    again = httpx.post(vlm.url + "/v1/chat/completions/vision", timeout=60, json={
        "messages": messages, "max_tokens": NEW, "temperature": 0}).json()
    assert again["choices"][0]["message"]["content"] == r.choices[0].message.content
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == again["usage"]["prompt_tokens"] - 1


@pytest.mark.parametrize("image_data, text, message", [
    ("data:image/png;base64,aGVsbG8=", PROMPT, "cannot decode the image"),
    ("not an image!", PROMPT, "not an image URL"),
    ("/nonexistent/x.png", PROMPT, "could not read the image file"),
    ([_data_url(_image(6))] * 17, PROMPT * 17, "at most 16"),
    ([_data_url(_image(6))] * 2, PROMPT, "1 image token(s)"),
    (None, PROMPT, "no images were given"),
])
def test_bad_images_are_400s(vlm, image_data, text, message):
    r = generate(vlm, text, image_data)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
