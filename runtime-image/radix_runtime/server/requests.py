"""Validated API requests -> EngineRequests: tokenizing, the prompt checks (core/validation.py, as
400s naming the request's fields), and the sampling parameters the engine takes. Pure functions
of their arguments."""
from __future__ import annotations

import dataclasses
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from radix_runtime.core.errors import InvalidRequestError
from radix_runtime.core.request import EngineRequest, GrammarSpec, SamplingParams
from radix_runtime.core.validation import check_new_tokens, check_prompt, check_token_ids
from radix_runtime.server import schemas
from radix_runtime.server.errors import bad_request


@dataclass(frozen=True)
class Limits:
    context_length: int
    vocab_size: int


def new_rid() -> str:
    return uuid.uuid4().hex


def encode(tokenizer, text: str, add_special_tokens: bool = True) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))


@contextmanager
def _as_400(param: str):
    """core.validation's InvalidRequestError as a 400 that names the request's own field."""
    try:
        yield
    except InvalidRequestError as e:
        raise bad_request(e.message, param) from None


def check_ids(ids: list[int], limits: Limits, param: str) -> list[int]:
    with _as_400(param):
        check_prompt(ids, limits.context_length, limits.vocab_size)
    return ids


def grammar_of(sp: schemas.SamplingParamsBody, param: str) -> GrammarSpec | None:
    """SGLang's json_schema / regex / ebnf (schemas.py allows one) as the engine's GrammarSpec."""
    for kind in ("json_schema", "regex", "ebnf"):
        value = getattr(sp, kind)
        if value is not None:
            return GrammarSpec(kind, value, f"{param}.{kind}")
    return None


def engine_sampling(sp: schemas.SamplingParamsBody | None, prompt_len: int, limits: Limits,
                    param: str = "sampling_params") -> SamplingParams:
    sp = sp or schemas.SamplingParamsBody()
    room = limits.context_length - prompt_len
    max_new = room if sp.max_new_tokens is None else sp.max_new_tokens
    with _as_400(f"{param}.max_new_tokens"):
        check_new_tokens(prompt_len, max_new, limits.context_length)
    with _as_400(param):
        check_token_ids(list(sp.stop_token_ids or []) + list(sp.logit_bias_ids() or {}),
                        limits.vocab_size, param)
    return SamplingParams(
        max_new_tokens=max_new, min_new_tokens=min(sp.min_new_tokens, max_new),
        temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k, min_p=sp.min_p,
        frequency_penalty=sp.frequency_penalty, presence_penalty=sp.presence_penalty,
        repetition_penalty=sp.repetition_penalty, stop=sp.stop_list(),
        stop_token_ids=list(sp.stop_token_ids or []), ignore_eos=sp.ignore_eos,
        skip_special_tokens=sp.skip_special_tokens,
        spaces_between_special_tokens=sp.spaces_between_special_tokens,
        no_stop_trim=sp.no_stop_trim, logit_bias=sp.logit_bias_ids(), seed=sp.sampling_seed,
        grammar=grammar_of(sp, param))


def engine_requests(ids: list[int], sp: schemas.SamplingParamsBody | None, limits: Limits, *,
                    rid: str | None, param: str, return_logprob: bool = False,
                    top_logprobs_num: int = 0, logprob_start_len: int = -1,
                    priority: int | None = None, grammar: GrammarSpec | None = None,
                    images: list | None = None) -> list[EngineRequest]:
    """One EngineRequest per sample (`n`), rids `rid` or `rid-i` when n > 1. `grammar`: the
    route's output constraint (OpenAI's response_format / tools), instead of sp's. `images`: the
    prompt's images.ImageInputs (server/vision.py)."""
    check_ids(ids, limits, param)
    sampling = engine_sampling(sp, len(ids), limits)
    if grammar is not None:
        sampling.grammar = grammar
    n = sp.n if sp else 1
    base = rid or new_rid()
    rids = [base] if n == 1 else [f"{base}-{i}" for i in range(n)]
    if top_logprobs_num < 0:
        raise bad_request("must be >= 0", "top_logprobs_num")
    return [EngineRequest(rid=r, input_ids=list(ids), sampling=dataclasses.replace(sampling),
                          return_logprob=return_logprob or top_logprobs_num > 0,
                          top_logprobs_num=top_logprobs_num,
                          logprob_start_len=logprob_start_len, priority=priority or 0,
                          images=list(images or []))
            for r in rids]
