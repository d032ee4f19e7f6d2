"""What the server hands the engine for one request, and the updates it gets back."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GrammarSpec:
    """A constraint on the output, compiled by the engine's grammar backend (xgrammar).

    kind: "json_schema" (value: the schema as JSON text), "json_object" (any JSON object; value
    unused), "regex" or "ebnf" (value: the pattern / grammar text). `field` names the request
    field it came from, for the 400 an invalid one gets. `strict`: JSON Schema's strict mode
    (properties not listed are not allowed unless the schema says otherwise)."""

    kind: str
    value: str
    field: str
    strict: bool = True

    def key(self) -> tuple:
        return (self.kind, self.value, self.strict)


@dataclass
class SamplingParams:
    """Resolved sampling parameters (already validated by the server's request models)."""

    max_new_tokens: int = 128
    min_new_tokens: int = 0
    temperature: float = 1.0  # < 1e-6 means greedy
    top_p: float = 1.0
    top_k: int = -1  # -1: whole vocabulary
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    logit_bias: dict[int, float] | None = None
    seed: int | None = None  # SGLang's `sampling_seed`
    grammar: GrammarSpec | None = None  # SGLang's json_schema / regex / ebnf (one per request)


@dataclass
class EngineRequest:
    rid: str
    input_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    return_logprob: bool = False
    top_logprobs_num: int = 0
    logprob_start_len: int = -1
    priority: int = 0
    embedding: bool = False  # prefill only; the output carries the last token's hidden state
    images: list = field(default_factory=list)  # images.ImageInput, in prompt order
    # False: the caller takes the finished output only (a non-streaming API request). Updates
    # then come at the first token, every FORCE_STREAM_INTERVAL tokens and at the end, as SGLang
    # sends a non-streaming request's, instead of one per token.
    stream: bool = True


FORCE_STREAM_INTERVAL = 50  # SGLang's DEFAULT_FORCE_STREAM_INTERVAL


@dataclass(slots=True)  # one per running request per step: slots make it cheaper to build
class EngineOutput:
    """One update for one request. Fields are cumulative, never deltas."""

    rid: str
    output_ids: list[int]
    text: str  # detokenized output so far; stop string trimmed unless no_stop_trim
    finished: bool
    # {"type": "stop", "matched": id|str} | {"type": "length", "length": n} |
    # {"type": "abort", "message": str} | None while running
    finish_reason: dict | None
    prompt_tokens: int
    cached_tokens: int  # prompt tokens served from the radix cache
    completion_tokens: int
    # [(logprob, token_id), ...] when return_logprob; input entries start at logprob_start_len
    # (-1: none), and the prompt's first token has no logprob: (None, id), as SGLang reports it
    input_token_logprobs: list[tuple[float | None, int]] | None = None
    output_token_logprobs: list[tuple[float, int]] | None = None
    # per output position: [(logprob, token_id), ...] of the top_logprobs_num best
    output_top_logprobs: list[list[tuple[float, int]]] | None = None
    embedding: list[float] | None = None
