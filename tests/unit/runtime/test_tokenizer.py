"""Our tokenizer wrapper against HF's AutoTokenizer on the tiny checkpoint, and incremental
detokenization against a full decode."""
from __future__ import annotations

import random

import pytest

from radix_runtime.chat_template import load_chat_template
from radix_runtime.tokenizer import IncrementalDetokenizer, Tokenizer


@pytest.fixture(scope="module")
def model_dir(tiny_model) -> str:
    return str(tiny_model)


def test_matches_hf_tokenizer(model_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(model_dir)
    tok = Tokenizer(model_dir)
    for text in ["Hello world", "def fibonacci(n):\n    return n", "héllo wörld — ünïcode ✓ 漢字", ""]:
        assert tok.encode(text) == hf(text).input_ids
        assert tok.encode(text, add_special_tokens=False) == hf(text, add_special_tokens=False).input_ids
        ids = tok.encode(text)
        assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=True)
    assert tok.bos_token_id == hf.bos_token_id and tok.eos_token_id == hf.eos_token_id
    assert load_chat_template(model_dir).source == hf.chat_template
    assert 256 < tok.vocab_size <= 1024


def test_incremental_detokenization_equals_full_decode(model_dir):
    tok = Tokenizer(model_dir)
    rng = random.Random(0)
    texts = ["multi-byte: é ü 漢字 ✓ 🙂 and more", "The quick brown fox.\n\tTabs and  spaces"]
    samples = [tok.encode(t, add_special_tokens=False) for t in texts]
    samples += [[rng.randrange(tok.vocab_size) for _ in range(40)] for _ in range(20)]
    for k, ids in enumerate(samples):
        d = IncrementalDetokenizer(tok)
        seen = []
        for t in ids:
            text = d.add([t])
            if k < len(texts):  # valid UTF-8: half a character is held back, never shown
                assert "\ufffd" not in text
            seen.append(text)
        assert all(a == b[:len(a)] for a, b in zip(seen, seen[1:]))  # only ever grows
        assert d.flush() == tok.decode(ids)
