"""Greedy output through HTTP equals HF transformers (AutoModelForCausalLM.generate) on the same
checkpoint, tokenizer included; a second request sharing the prefix is served from the cache."""
import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.support.hf import hf_greedy

pytestmark = pytest.mark.runtime  # starts real server processes

PROMPTS = ["The quick brown fox", "Kubernetes runs containers in pods; a deployment keeps",
           "def fibonacci(n):\n    a, b = 0, 1"]


@pytest.fixture(scope="module")
def hf(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return tok, model


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_matches_hf(server, hf, prompt):
    tok, _ = hf
    r = httpx.post(server.url + "/generate", timeout=60, json={
        "text": prompt, "sampling_params": {"max_new_tokens": 24, "temperature": 0}}).json()
    ids = tok(prompt).input_ids
    expected = hf_greedy(hf[1], ids, 24)
    assert r["meta_info"]["prompt_tokens"] == len(ids)
    assert r["output_ids"] == expected
    assert r["text"] == tok.decode(expected, skip_special_tokens=True)


def test_chat_matches_hf_template_and_model(server, hf):
    tok, _ = hf
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False).input_ids  # what apply_chat_template(tokenize=True) does
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
        "messages": messages, "max_tokens": 16, "temperature": 0}).json()
    assert r["usage"]["prompt_tokens"] == len(ids)
    expected = hf_greedy(hf[1], ids, 16)
    assert r["usage"]["completion_tokens"] == len(expected)
    assert r["choices"][0]["message"]["content"] == tok.decode(expected, skip_special_tokens=True)


def test_shared_prefix_is_cached_and_output_unchanged(server, hf):
    tok, _ = hf
    prefix = "You are a helpful assistant. Answer the question briefly and honestly. " * 4
    for question in ("What is a radix tree?", "What is a pod?"):
        r = httpx.post(server.url + "/generate", timeout=60, json={
            "text": prefix + question,
            "sampling_params": {"max_new_tokens": 8, "temperature": 0}}).json()
        assert r["output_ids"] == hf_greedy(hf[1], tok(prefix + question).input_ids, 8)
    # the second question reused (at least) the shared prefix
    assert r["meta_info"]["cached_tokens"] >= len(tok(prefix).input_ids) - 2
    assert r["meta"]["radix_cache_hit"] is True
