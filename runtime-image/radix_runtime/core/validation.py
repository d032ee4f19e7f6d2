"""The checks a prompt must pass, in one place: the server runs them to answer 400 with the
request's own field names, the engine runs them again for callers that skip the server."""
from __future__ import annotations

from .errors import InvalidRequestError


def check_token_ids(ids, vocab_size: int, field: str) -> None:
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise InvalidRequestError(field, f"token id {bad} is outside the vocabulary [0, {vocab_size})")


def check_prompt(ids: list[int], context_length: int, vocab_size: int) -> None:
    if not ids:
        raise InvalidRequestError("input_ids", "the prompt is empty")
    check_token_ids(ids, vocab_size, "input_ids")
    if len(ids) >= context_length:
        raise InvalidRequestError("input_ids", f"the prompt has {len(ids)} tokens; the model's context "
                                               f"length is {context_length} (prompt + output must fit)")


def check_new_tokens(prompt_len: int, max_new_tokens: int, context_length: int) -> None:
    if prompt_len + max_new_tokens > context_length:
        raise InvalidRequestError("max_new_tokens", f"{prompt_len} prompt tokens + {max_new_tokens} new "
                                                    f"tokens exceed the context length {context_length}")
