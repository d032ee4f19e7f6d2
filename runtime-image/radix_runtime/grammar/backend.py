"""Constrained decoding on xgrammar (SGLang's default grammar backend).

`GrammarBackend` knows the tokenizer's vocabulary (padded to the model's logits width) and compiles
a request's `GrammarSpec` (JSON schema, any JSON object, regex, EBNF) into an xgrammar
CompiledGrammar: off the scheduler loop (a small thread pool), once per distinct spec (an LRU
cache; concurrent requests with the same spec share one compilation). A request gets its own
`GrammarMatcher` (the grammar's state after the tokens it has generated).

`apply_masks` fills the token bitmask of every constrained row of a batch and applies it to the
batch's logits in one call; unconstrained rows are not touched. `accept` advances a matcher.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
import xgrammar as xgr

from ..core.errors import InvalidRequestError
from ..core.request import GrammarSpec

CACHE_ENTRIES = 256  # distinct compiled grammars kept
_CPP_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:\d+: (Check failed: \(.*?\) is false: )?")


def clean_error(e: Exception) -> str:
    """xgrammar's C++ errors without their timestamp and source-location prefix."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return _CPP_PREFIX.sub("", lines[0] if lines else type(e).__name__).strip()


@dataclass
class GrammarState:
    """One request's position in its grammar."""

    matcher: "xgr.GrammarMatcher"
    is_json: bool  # JSON output: tokens with raw control characters are masked too
    lead: int | None = None  # JSON: the output ends in this UTF-8 lead byte (see _SECOND_BYTE)


# UTF-8 leads whose second byte is restricted (no overlongs, no UTF-16 surrogates, <= U+10FFFF):
# xgrammar lets e.g. ED A0..BF (a surrogate) into JSON strings, which no JSON parser accepts.
_SECOND_BYTE = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}


def control_char_tokens(tokenizer_dir: str) -> list[int]:
    """Ids whose text holds a control character (< U+0020). JSON allows none unescaped, but
    xgrammar's string rule lets all but CR/LF through, so JSON rows mask these as well."""
    from tokenizers import Tokenizer as _HFTokenizer

    tok = _HFTokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    return [i for i in range(tok.get_vocab_size(with_added_tokens=True))
            if i not in special and any(ord(c) < 0x20 for c in tok.decode([i], skip_special_tokens=False))]


def tokenizer_info(tokenizer_dir: str, vocab_size: int, stop_ids: set[int]) -> "xgr.TokenizerInfo":
    """xgrammar's view of an HF fast tokenizer (tokenizer.json), without transformers: tokens by
    id, padded to the model's vocab (ids past the tokenizer's are never allowed); special tokens
    other than the stop tokens are emptied so a grammar never emits them as text."""
    from tokenizers import Tokenizer as _HFTokenizer

    tok = _HFTokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    vocab = tok.get_vocab(with_added_tokens=True)
    size = max(vocab_size, max(vocab.values()) + 1)
    encoded = [""] * size
    for token, i in vocab.items():
        encoded[i] = token
    for i, added in tok.get_added_tokens_decoder().items():
        if added.special and i not in stop_ids:
            encoded[i] = ""
    meta = xgr.TokenizerInfo._detect_metadata_from_hf(tok.to_str())
    return xgr.TokenizerInfo(encoded, meta["vocab_type"], vocab_size=size,
                             stop_token_ids=sorted(stop_ids), add_prefix_space=meta["add_prefix_space"])


class GrammarBackend:
    def __init__(self, tokenizer_dir: str, vocab_size: int, stop_ids: set[int], threads: int = 2):
        self.vocab_size = vocab_size
        self.info = tokenizer_info(tokenizer_dir, vocab_size, set(stop_ids))
        self._bytes: list[bytes] = list(self.info.decoded_vocab)  # each token's bytes
        # per restricted UTF-8 lead: the tokens whose first byte is a continuation it forbids
        self._after_lead = {lead: torch.tensor(
            [i for i, b in enumerate(self._bytes) if b and 0x80 <= b[0] <= 0xBF and not lo <= b[0] <= hi],
            dtype=torch.long) for lead, (lo, hi) in _SECOND_BYTE.items()}
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=threads, cache_enabled=False)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="grammar-compile")
        self._cache: OrderedDict[tuple, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._mask: torch.Tensor | None = None  # reused [rows, words] int32 bitmask
        self._control = torch.tensor(control_char_tokens(tokenizer_dir), dtype=torch.long)
        self._control_on: dict[torch.device, torch.Tensor] = {}
        self.compilations = 0  # distinct specs compiled (cache misses)

    # -- compiling --------------------------------------------------------------------------
    def _compile(self, spec: GrammarSpec) -> "xgr.CompiledGrammar":
        try:
            if spec.kind == "json_schema":
                schema = json.loads(spec.value)
                if not isinstance(schema, (dict, bool)):
                    raise ValueError("a JSON schema is an object (or true/false)")
                return self.compiler.compile_json_schema(spec.value, any_whitespace=False,
                                                         strict_mode=spec.strict)
            if spec.kind == "json_object":
                return self.compiler.compile_json_schema('{"type": "object"}', any_whitespace=False,
                                                         strict_mode=False)
            if spec.kind == "regex":
                return self.compiler.compile_regex(spec.value)
            if spec.kind == "ebnf":
                return self.compiler.compile_grammar(spec.value)
        except json.JSONDecodeError as e:
            raise InvalidRequestError(spec.field, f"not valid JSON: {e}") from None
        except (RuntimeError, ValueError, TypeError) as e:
            raise InvalidRequestError(spec.field, f"invalid {spec.kind.replace('_', ' ')}: "
                                                  f"{clean_error(e)}") from None
        raise InvalidRequestError(spec.field, f"unknown grammar kind {spec.kind!r}")

    def submit(self, spec: GrammarSpec) -> Future:
        """The compilation of `spec` (shared with any earlier request for the same spec)."""
        key = spec.key()
        with self._lock:
            fut = self._cache.get(key)
            if fut is not None:
                self._cache.move_to_end(key)
                return fut
            fut = self._pool.submit(self._compile, spec)
            self.compilations += 1
            self._cache[key] = fut
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        fut.add_done_callback(lambda f: f.exception() is not None and self._forget(key, f))
        return fut

    def _forget(self, key: tuple, fut: Future) -> None:
        with self._lock:  # a failed compilation is not cached (its error names a field)
            if self._cache.get(key) is fut:
                del self._cache[key]

    async def compile(self, spec: GrammarSpec) -> "xgr.CompiledGrammar":
        """Raises InvalidRequestError(spec.field, ...) for a bad schema, regex or grammar."""
        fut = self.submit(spec)
        try:
            return await asyncio.wrap_future(fut)
        except InvalidRequestError as e:
            # the cached future carries the first requester's field name
            raise InvalidRequestError(spec.field, e.message) from None

    def matcher(self, compiled: "xgr.CompiledGrammar", spec: GrammarSpec) -> GrammarState:
        return GrammarState(xgr.GrammarMatcher(compiled), spec.kind in ("json_schema", "json_object"))

    # -- decoding ---------------------------------------------------------------------------
    def apply_masks(self, logits: torch.Tensor, matchers: list) -> None:
        """In place on logits [B, V]: rows whose GrammarState is not None may only pick tokens
        their grammar allows next."""
        rows = [i for i, m in enumerate(matchers) if m is not None]
        if not rows:
            return
        n = len(matchers)
        if self._mask is None or self._mask.shape[0] < n:
            self._mask = xgr.allocate_token_bitmask(max(n, 8), self.info.vocab_size)
        mask = self._mask[:n]
        for i in rows:
            matchers[i].matcher.fill_next_token_bitmask(mask, i)
        on_dev = mask if logits.device.type == "cpu" else mask.to(logits.device, non_blocking=True)
        xgr.apply_token_bitmask_inplace(logits, on_dev, vocab_size=min(logits.shape[1], self.info.vocab_size),
                                        indices=rows)
        json_rows = [i for i in rows if matchers[i].is_json]
        if json_rows and self._control.numel():
            ctrl = self._control_on.get(logits.device)
            if ctrl is None:
                ctrl = self._control_on[logits.device] = self._control.to(logits.device)
            logits[torch.tensor(json_rows, device=logits.device)[:, None], ctrl[None, :]] = float("-inf")
        for i in json_rows:
            if matchers[i].lead is not None:
                logits[i, self._after_lead[matchers[i].lead].to(logits.device)] = float("-inf")

    def accept(self, state: GrammarState, token: int) -> bool:
        """Advance the grammar by the sampled token; False if the grammar rejects it."""
        if state.matcher.is_terminated():
            return True
        if not state.matcher.accept_token(token):
            return False
        b = self._bytes[token] if token < len(self._bytes) else b""
        if b:
            state.lead = b[-1] if b[-1] in _SECOND_BYTE else None
        return True
