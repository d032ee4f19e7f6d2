"""Speculative decoding settings: SGLang's `--speculative-*` flags resolved into what the scheduler
runs, with a clear error (naming the flag and the values we take) for anything we do not do.

SGLang's meaning of the flags (server_args.py): `--speculative-num-steps` is how many tokens the
draft proposes per round, `--speculative-eagle-topk` its branching (1: one chain, the only shape
we draft), `--speculative-num-draft-tokens` the tokens the target verifies per round including the
last accepted one, so with topk 1 it is num_steps + 1 (SGLang adjusts it to that, so do we). NGRAM
looks the draft up in the request's own tokens (prompt lookup) and proposes up to
num_draft_tokens - 1 of them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from .config import EngineConfig

STANDALONE, NGRAM = "STANDALONE", "NGRAM"
ALGORITHMS = (STANDALONE, NGRAM)
# SGLang's other values: they need draft models of their own kind (EAGLE heads, MTP layers)
UPSTREAM_ONLY = ("EAGLE", "EAGLE3", "NEXTN")
DEFAULT_NUM_STEPS = 3  # STANDALONE without any of steps/topk/draft-tokens given
DEFAULT_NGRAM_DRAFT_TOKENS = 12  # SGLang: --speculative-ngram-max-match-window-size's default

log = logging.getLogger("radix_runtime.speculative")


@dataclass(frozen=True)
class SpecSettings:
    algorithm: str  # STANDALONE | NGRAM
    num_drafts: int  # tokens proposed per round (at most)
    draft_model_path: str | None = None  # STANDALONE
    ngram_min_window: int = 1
    ngram_max_window: int = 12


def _fail(flag: str, message: str) -> None:
    raise ValueError(f"{flag}: {message}")


def resolve_speculative(c: EngineConfig) -> SpecSettings | None:
    """None when speculation is off; ValueError (flag named first) when the flags ask for what we
    do not implement."""
    algo = c.speculative_algorithm
    if algo is None:
        if c.speculative_draft_model_path:
            _fail("--speculative-draft-model-path", "needs --speculative-algorithm STANDALONE")
        return None
    algo = algo.upper()
    if algo in UPSTREAM_ONLY:
        _fail("--speculative-algorithm", f"{algo} needs upstream SGLang (engine: sglang); the radix "
                                         f"runtime implements {' and '.join(ALGORITHMS)}")
    if algo not in ALGORITHMS:
        _fail("--speculative-algorithm", f"unknown value {c.speculative_algorithm!r}; allowed: "
                                         f"{', '.join(ALGORITHMS)} (and upstream SGLang's "
                                         f"{', '.join(UPSTREAM_ONLY)} with engine: sglang)")
    if c.speculative_eagle_topk not in (None, 1):
        _fail("--speculative-eagle-topk", f"{c.speculative_eagle_topk}: only 1 (a single draft chain) "
                                          "is supported; tree drafting needs upstream SGLang")
    for flag, v in (("--speculative-accept-threshold-single", c.speculative_accept_threshold_single),
                    ("--speculative-accept-threshold-acc", c.speculative_accept_threshold_acc)):
        if v != 1.0:
            _fail(flag, f"{v}: only 1.0 (exact verification: the output distribution is the "
                        "target's) is supported")
    for flag, v in (("--speculative-num-steps", c.speculative_num_steps),
                    ("--speculative-num-draft-tokens", c.speculative_num_draft_tokens)):
        if v is not None and v < 1 or (flag.endswith("draft-tokens") and v == 1):
            _fail(flag, f"{v}: must be at least {2 if flag.endswith('draft-tokens') else 1}")
    if algo == NGRAM:
        if c.speculative_draft_model_path:
            _fail("--speculative-draft-model-path", "NGRAM needs no draft model (it looks the draft "
                                                    "up in the request's own tokens)")
        lo, hi = c.speculative_ngram_min_match_window_size, c.speculative_ngram_max_match_window_size
        if not 1 <= lo <= hi:
            _fail("--speculative-ngram-min-match-window-size",
                  f"{lo}: must be at least 1 and at most --speculative-ngram-max-match-window-size ({hi})")
        tokens = c.speculative_num_draft_tokens or (
            c.speculative_num_steps + 1 if c.speculative_num_steps else DEFAULT_NGRAM_DRAFT_TOKENS)
        return SpecSettings(NGRAM, tokens - 1, ngram_min_window=lo, ngram_max_window=hi)
    if not c.speculative_draft_model_path:
        _fail("--speculative-draft-model-path", "STANDALONE needs a draft model (same tokenizer as "
                                                "the target, smaller)")
    if c.tp_size * c.pp_size > 1:
        _fail("--speculative-algorithm", "STANDALONE runs with --tp-size 1 --pp-size 1 only (NGRAM "
                                         "works with any)")
    steps = c.speculative_num_steps
    if steps is None:
        steps = c.speculative_num_draft_tokens - 1 if c.speculative_num_draft_tokens else DEFAULT_NUM_STEPS
    if c.speculative_num_draft_tokens not in (None, steps + 1):
        log.warning("--speculative-num-draft-tokens is adjusted to --speculative-num-steps + 1 = %d "
                    "(one draft chain, as SGLang does with --speculative-eagle-topk 1)", steps + 1)
    return SpecSettings(STANDALONE, steps, draft_model_path=c.speculative_draft_model_path)
