"""Our tokenizer wrapper against HF's AutoTokenizer on the tiny checkpoint, and incremental
detokenization against a full decode."""
from __future__ import annotations

import random

import pytest

from radix_runtime.chat_template import load_chat_template
from radix_runtime.tokenizer import (_CHAR_BYTES, ByteDetokenizer, IncrementalDetokenizer, Tokenizer,
                                    WindowDetokenizer)


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
    for cls in (ByteDetokenizer, WindowDetokenizer):  # byte-level BPE's path, and the others'
        for k, ids in enumerate(samples):
            d = cls(tok)
            seen = []
            for t in ids:
                text = d.add([t])
                if k < len(texts):  # valid UTF-8: half a character is held back, never shown
                    assert "\ufffd" not in text
                seen.append(text)
            assert all(a == b[:len(a)] for a, b in zip(seen, seen[1:]))  # only ever grows
            assert d.flush() == tok.decode(ids)


def test_byte_level_detokenizer_equals_full_decode_on_random_streams(model_dir):
    """Any id stream (special tokens and ids past the vocabulary included, invalid UTF-8 byte runs
    too), either skip mode: the streamed text only grows and ends as the library's full decode."""
    tok = Tokenizer(model_dir)
    assert tok.byte_level and tok.special_ids
    rng = random.Random(1)
    for _ in range(500):
        ids = [rng.randrange(tok.vocab_size + 3) for _ in range(rng.randrange(1, 40))]
        for skip in (True, False):
            d = IncrementalDetokenizer(tok, skip)
            assert isinstance(d, ByteDetokenizer)
            prev = ""
            k = 0
            while k < len(ids):  # 1 to 3 ids at a time
                step = rng.randrange(1, 4)
                text = d.add(ids[k:k + step])
                assert text.startswith(prev)
                prev, k = text, k + step
            assert d.flush() == tok.decode(ids, skip_special_tokens=skip)


def _byte_ids(tok: Tokenizer, text: str) -> list[int]:
    """text as one byte-level token per UTF-8 byte (the vocabulary holds the whole byte alphabet)."""
    inverse = {b: c for c, b in _CHAR_BYTES.items()}
    return [tok.token_to_id(inverse[b]) for b in text.encode()]


def test_multi_byte_characters_split_across_tokens_are_held_back_whole(model_dir):
    tok = Tokenizer(model_dir)
    text = "a漢字🙂é✓ b"
    ids = _byte_ids(tok, text)
    assert None not in ids and len(ids) == len(text.encode())
    for d in (ByteDetokenizer(tok), WindowDetokenizer(tok)):
        seen = [d.add([t]) for t in ids]
        assert all("\ufffd" not in s and text.startswith(s) for s in seen)
        assert seen[-1] == d.flush() == text == tok.decode(ids)
    d = ByteDetokenizer(tok)  # a character cut off at the end: flushed as the library decodes it
    cut = ids[:-len(" b".encode()) - len("✓".encode()) + 1]
    for t in cut:
        d.add([t])
    assert d.flush() == tok.decode(cut) and d.text.endswith("\ufffd")


class CountingTokenizer:
    """Tokenizer.decode only, counting the calls (and not byte-level: the window path)."""

    def __init__(self, tok: Tokenizer):
        self.tok, self.calls = tok, 0

    def decode(self, ids, skip_special_tokens=True):
        self.calls += 1
        return self.tok.decode(ids, skip_special_tokens)


def test_window_detokenizer_decodes_about_once_per_token(model_dir):
    tok = Tokenizer(model_dir)
    counting = CountingTokenizer(tok)
    assert isinstance(IncrementalDetokenizer(counting), WindowDetokenizer)
    ids = tok.encode("The quick brown fox jumps over the lazy dog, twice: " * 8, add_special_tokens=False)
    d = IncrementalDetokenizer(counting)
    for t in ids:
        d.add([t])
    assert d.flush() == tok.decode(ids)
    assert counting.calls <= len(ids) * (1 + 1 / 8) + 1, (counting.calls, len(ids))
