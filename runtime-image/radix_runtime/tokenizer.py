"""HF `tokenizer.json` + `tokenizer_config.json` through the `tokenizers` library (no transformers).

`Tokenizer` is what the server encodes prompts with (chat templates are chat_template.py's);
`IncrementalDetokenizer` turns a growing list of output ids into cumulative text without
re-decoding everything each step and without emitting half of a multi-byte character: per token a
table lookup and an incremental UTF-8 decode for byte-level BPE (GPT-2/Llama-3/Qwen style), else
one library decode of a short window.
"""
from __future__ import annotations

import codecs
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
        # byte-level BPE: a token's text is a fixed byte string, so output text can be built from
        # per-token bytes (token_bytes) instead of library decodes
        from tokenizers import decoders

        self.byte_level = isinstance(self._tok.decoder, decoders.ByteLevel)
        self.special_ids = frozenset(i for i, t in self._tok.get_added_tokens_decoder().items() if t.special)
        self._bytes: dict[int, bytes] = {}

    def token_to_id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """What the ByteLevel decoder makes of one token (byte_level tokenizers only): each
        character mapped back to its byte, or the token's UTF-8 as is when one does not map (added
        tokens such as " foo"); unknown ids decode to nothing."""
        b = self._bytes.get(token_id)
        if b is None:
            tok = self._tok.id_to_token(token_id)
            if tok is None:
                b = b""
            else:
                try:
                    b = bytes(_CHAR_BYTES[c] for c in tok)
                except KeyError:
                    b = tok.encode()
            self._bytes[token_id] = b
        return b


def _char_bytes() -> dict[str, int]:
    """GPT-2's bytes_to_unicode, inverted: the printable character standing for each byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_CHAR_BYTES = _char_bytes()


def IncrementalDetokenizer(tokenizer: Tokenizer, skip_special_tokens: bool = True):
    """The detokenizer for one request's output: ByteDetokenizer where the tokenizer is byte-level
    BPE, else WindowDetokenizer (which needs only `decode`). Both have `text` (cumulative),
    add(ids) -> text, add_one(id) -> text and flush() -> text."""
    if getattr(tokenizer, "byte_level", False):
        return ByteDetokenizer(tokenizer, skip_special_tokens)
    return WindowDetokenizer(tokenizer, skip_special_tokens)


class ByteDetokenizer:
    """Byte-level BPE: the text of ids is their bytes concatenated, decoded as UTF-8 with
    replacement (what the library does), so an incremental UTF-8 decoder over per-token bytes
    gives the same text, holding back only the bytes of a character still incomplete."""

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True):
        self.tok = tokenizer
        self.skip = skip_special_tokens
        self.text = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def add(self, new_ids: list[int]) -> str:
        if len(new_ids) == 1:
            return self.add_one(new_ids[0])
        tb, special = self.tok.token_bytes, self.tok.special_ids
        return self._add_bytes(b"".join(tb(t) for t in new_ids if not (self.skip and t in special)))

    def add_one(self, t: int) -> str:
        """add([t]), for the decode step's hot path."""
        if self.skip and t in self.tok.special_ids:
            return self.text
        return self._add_bytes(self.tok.token_bytes(t))

    def _add_bytes(self, b: bytes) -> str:
        dec = self._utf8
        if dec.buffer:  # the rest of a character is pending
            s = dec.decode(b)
        else:  # usually whole characters: skip the incremental decoder's Python layer
            try:
                s = b.decode()
            except UnicodeDecodeError:
                s = dec.decode(b)
        if s:
            self.text += s
        return self.text

    def flush(self) -> str:
        """At the end, emit whatever is left, replacement characters included."""
        self.text += self._utf8.decode(b"", final=True)
        return self.text


_WINDOW = 8  # tokens a window may span before its start moves up (one extra decode then)


class WindowDetokenizer:
    """Cumulative text for a growing id list (the prefix/read offset scheme of vLLM and SGLang):
    decode a short window that starts a few tokens back, so merges across token boundaries and
    multi-byte characters come out right, and hold back text ending in U+FFFD (an incomplete byte
    sequence) until the next token completes it. The window's start stays put for up to _WINDOW
    tokens, so the text of the part already read is the last window's: one decode per token."""

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True):
        self.tok = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""
        self._surr = 0  # window start
        self._read = 0  # ids before this are reflected in self.text
        self._prefix = ""  # decode(ids[_surr:_read])

    def add(self, new_ids: list[int]) -> str:
        self.ids.extend(new_ids)
        window = self.tok.decode(self.ids[self._surr:], self.skip)
        # a UTF-8 character spans at most 4 byte tokens: hold back that long, then accept that
        # the bytes really are invalid (else the window would grow without bound)
        if window.endswith("\ufffd") and len(self.ids) - self._read < 4:
            return self.text
        self._emit(window)
        return self.text

    def add_one(self, t: int) -> str:
        return self.add([t])

    def _emit(self, window: str) -> None:
        old_read = self._read
        self.text += window[len(self._prefix):]
        self._read = len(self.ids)
        if self._read - self._surr > _WINDOW:  # start the window at the tokens just read
            self._surr = old_read
            self._prefix = self.tok.decode(self.ids[self._surr:self._read], self.skip)
        else:
            self._prefix = window

    def flush(self) -> str:
        """At the end, emit whatever is left, replacement characters included."""
        if self._read < len(self.ids):
            self._emit(self.tok.decode(self.ids[self._surr:], self.skip))
        return self.text
