"""HF `tokenizer.json` + `tokenizer_config.json` through the `tokenizers` library (no transformers).

`Tokenizer` is what the server encodes prompts and renders chat with; `IncrementalDetokenizer`
turns a growing list of output ids into cumulative text without re-decoding everything each step
and without emitting half of a multi-byte character.
"""
from __future__ import annotations

import json
import os


def _token_str(v) -> str | None:
    # tokenizer_config.json writes special tokens as "str" or {"content": "str", ...}
    if isinstance(v, dict):
        return v.get("content")
    return v


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


class Tokenizer:
    def __init__(self, path: str):
        from tokenizers import Tokenizer as _HFTokenizer

        self.path = path
        file = os.path.join(path, "tokenizer.json")
        if not os.path.exists(file):
            raise FileNotFoundError(f"{file} not found (only fast tokenizers are supported)")
        self._tok = _HFTokenizer.from_file(file)
        cfg = _read_json(os.path.join(path, "tokenizer_config.json"))
        self.config = cfg
        self.bos_token = _token_str(cfg.get("bos_token"))
        self.eos_token = _token_str(cfg.get("eos_token"))
        self.pad_token = _token_str(cfg.get("pad_token"))
        self.bos_token_id = self.token_to_id(self.bos_token)
        self.eos_token_id = self.token_to_id(self.eos_token)
        self.pad_token_id = self.token_to_id(self.pad_token)
        template = cfg.get("chat_template")
        jinja_file = os.path.join(path, "chat_template.jinja")
        if template is None and os.path.exists(jinja_file):
            with open(jinja_file) as f:
                template = f.read()
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template}
            template = named.get("default") or next(iter(named.values()), None)
        self.chat_template: str | None = template
        self.all_special_ids = {
            i for t, i in ((t, self._tok.token_to_id(t)) for t in self._special_strings()) if i is not None
        }
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def _special_strings(self) -> set[str]:
        out = {t for t in (self.bos_token, self.eos_token, self.pad_token) if t}
        for tid, added in self._tok.get_added_tokens_decoder().items():
            if added.special:
                out.add(added.content)
        return out

    def token_to_id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, i: int) -> str | None:
        return self._tok.id_to_token(i)


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
