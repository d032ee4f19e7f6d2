"""HF `tokenizer.json` + `tokenizer_config.json` through the `tokenizers` library (no transformers).

`Tokenizer` is what the server encodes prompts with (chat templates are chat_template.py's);
`IncrementalDetokenizer` turns a growing list of output ids into cumulative text without
re-decoding everything each step and without emitting half of a multi-byte character.
"""
from __future__ import annotations

import os

from .hf_files import read_json


def token_text(v) -> str | None:
    """tokenizer_config.json writes special tokens as "str" or {"content": "str", ...}."""
    if isinstance(v, dict):
        return v.get("content")
    return v


class Tokenizer:
    def __init__(self, path: str):
        from tokenizers import Tokenizer as _HFTokenizer

        file = os.path.join(path, "tokenizer.json")
        if not os.path.exists(file):
            raise FileNotFoundError(f"{file} not found (only fast tokenizers are supported)")
        self._tok = _HFTokenizer.from_file(file)
        cfg = read_json(os.path.join(path, "tokenizer_config.json"))
        self.bos_token_id = self.token_to_id(token_text(cfg.get("bos_token")))
        self.eos_token_id = self.token_to_id(token_text(cfg.get("eos_token")))
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)


class IncrementalDetokenizer:
    """Cumulative text for a growing id list (the prefix/read offset scheme of vLLM and SGLang):
    decode a short window that starts a few tokens back, so merges across token boundaries and
    multi-byte characters come out right, and hold back text ending in U+FFFD (an incomplete byte
    sequence) until the next token completes it."""

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True):
        self.tok = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""
        self._surr = 0  # window start
        self._read = 0  # ids before this are reflected in self.text

    def add(self, new_ids: list[int]) -> str:
        self.ids.extend(new_ids)
        window = self.tok.decode(self.ids[self._surr:], self.skip)
        # a UTF-8 character spans at most 4 byte tokens: hold back that long, then accept that
        # the bytes really are invalid (else the window would grow without bound)
        if window.endswith("\ufffd") and len(self.ids) - self._read < 4:
            return self.text
        prefix = self.tok.decode(self.ids[self._surr:self._read], self.skip)
        self.text += window[len(prefix):]
        self._surr, self._read = self._read, len(self.ids)
        return self.text

    def flush(self) -> str:
        """At the end, emit whatever is left, replacement characters included."""
        if self._read < len(self.ids):
            window = self.tok.decode(self.ids[self._surr:], self.skip)
            prefix = self.tok.decode(self.ids[self._surr:self._read], self.skip)
            self.text += window[len(prefix):]
            self._surr = self._read = len(self.ids)
        return self.text
