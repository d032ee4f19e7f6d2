"""Validated API requests -> EngineRequests: tokenizing, context-length and token-id checks, and
the sampling parameters the engine takes. Pure functions of their arguments."""
from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from radix_runtime.engine import protocol
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


def check_ids(ids: list[int], limits: Limits, param: str) -> list[int]:
    if not ids:
        raise bad_request("the prompt is empty", param)
    bad = next((t for t in ids if not 0 <= t < limits.vocab_size), None)
    if bad is not None:
        raise bad_request(f"token id {bad} is outside the vocabulary [0, {limits.vocab_size})",
                          param)
    if len(ids) >= limits.context_length:
        raise bad_request(f"the prompt has {len(ids)} tokens; the model's context length is "
                          f"{limits.context_length} (prompt + output must fit)", param)
    return ids


def engine_sampling(sp: schemas.SamplingParams | None, prompt_len: int, limits: Limits,
                    param: str = "sampling_params") -> protocol.SamplingParams:
    sp = sp or schemas.SamplingParams()
    room = limits.context_length - prompt_len
    max_new = room if sp.max_new_tokens is None else sp.max_new_tokens
    if max_new > room:
        raise bad_request(f"{prompt_len} prompt tokens + {max_new} new tokens exceed the "
                          f"context length {limits.context_length}", f"{param}.max_new_tokens")
    for t in list(sp.stop_token_ids or []) + list(sp.logit_bias_ids() or {}):
        if not 0 <= t < limits.vocab_size:
            raise bad_request(f"token id {t} is outside the vocabulary", param)
    return protocol.SamplingParams(
        max_new_tokens=max_new, min_new_tokens=min(sp.min_new_tokens, max_new),
        temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k, min_p=sp.min_p,
        frequency_penalty=sp.frequency_penalty, presence_penalty=sp.presence_penalty,
        repetition_penalty=sp.repetition_penalty, stop=sp.stop_list(),
        stop_token_ids=list(sp.stop_token_ids or []), ignore_eos=sp.ignore_eos,
        skip_special_tokens=sp.skip_special_tokens,
        spaces_between_special_tokens=sp.spaces_between_special_tokens,
        no_stop_trim=sp.no_stop_trim, logit_bias=sp.logit_bias_ids(), seed=sp.sampling_seed)


def engine_requests(ids: list[int], sp: schemas.SamplingParams | None, limits: Limits, *,
                    rid: str | None, param: str, return_logprob: bool = False,
                    top_logprobs_num: int = 0, logprob_start_len: int = -1,
                    priority: int | None = None) -> list[protocol.EngineRequest]:
    """One EngineRequest per sample (`n`), rids `rid` or `rid-i` when n > 1."""
    check_ids(ids, limits, param)
    sampling = engine_sampling(sp, len(ids), limits)
    n = sp.n if sp else 1
    base = rid or new_rid()
    rids = [base] if n == 1 else [f"{base}-{i}" for i in range(n)]
    if top_logprobs_num < 0:
        raise bad_request("must be >= 0", "top_logprobs_num")
    return [protocol.EngineRequest(rid=r, input_ids=list(ids),
                                   sampling=dataclasses.replace(sampling),
                                   return_logprob=return_logprob or top_logprobs_num > 0,
                                   top_logprobs_num=top_logprobs_num,
                                   logprob_start_len=logprob_start_len, priority=priority or 0)
            for r in rids]
