"""The seam between the HTTP server (above) and the engine (scheduler + radix cache + model, below).

The server validates and tokenizes a request, turns it into an `EngineRequest` and iterates the
`EngineOutput`s the engine yields for it. Everything the server may ask of the engine is here, so
the two sides can change independently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol


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


@dataclass
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


@dataclass
class EngineStats:
    """A snapshot for /metrics, /health and /server_info. Counters are monotonic."""

    num_running_reqs: int
    num_waiting_reqs: int
    token_usage: float  # fraction of KV slots held (running + cached)
    cache_usage: float  # fraction of KV slots held by the radix tree
    total_kv_tokens: int
    prompt_tokens_total: int
    cached_tokens_total: int
    computed_prefill_tokens_total: int  # prompt tokens actually run through the model
    generation_tokens_total: int
    num_retractions_total: int
    last_step_time: float  # time.monotonic() of the last scheduler step (health: "is it alive")
    broken: str | None = None  # why the engine cannot serve at all (a rank of its group is gone)


@dataclass
class EngineConfig:
    """What launch_server's flags decide about the engine (SGLang flag names in comments)."""

    model_path: str  # --model-path
    tokenizer_path: str | None = None  # --tokenizer-path
    dtype: str = "auto"  # --dtype: auto|float32|float16|bfloat16
    device: str = "auto"  # --device: auto|cpu|cuda
    context_length: int | None = None  # --context-length (default: the model's)
    page_size: int = 1  # --page-size
    max_total_tokens: int | None = None  # --max-total-tokens (KV pool size)
    mem_fraction_static: float | None = None  # --mem-fraction-static
    max_running_requests: int = 256  # --max-running-requests
    max_queued_requests: int = 4096  # --max-queued-requests (beyond: QueueFullError -> 503)
    chunked_prefill_size: int = 2048  # --chunked-prefill-size
    max_prefill_tokens: int = 8192  # --max-prefill-tokens
    schedule_policy: str = "lpm"  # --schedule-policy: lpm|fcfs
    disable_radix_cache: bool = False  # --disable-radix-cache
    random_seed: int = 0  # --random-seed
    tp_size: int = 1  # --tp-size
    pp_size: int = 1  # --pp-size


class QueueFullError(Exception):
    """The waiting queue is at max_queued_requests; the server answers 503 + Retry-After."""


class InvalidRequestError(ValueError):
    """A request the engine cannot serve (e.g. prompt + max_new_tokens beyond the context)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Engine(Protocol):
    config: EngineConfig
    tokenizer: "object"  # radix_runtime.tokenizer.Tokenizer
    context_length: int
    is_generation: bool

    def generate(self, req: EngineRequest) -> AsyncIterator[EngineOutput]:
        """Submit and stream updates until one with finished=True. Raises QueueFullError or
        InvalidRequestError before yielding anything. Closing the iterator early (client gone)
        aborts the request and frees its KV."""

    def abort(self, rid: str) -> bool: ...

    def flush_cache(self) -> bool:
        """Empty the radix cache; False (and nothing done) while requests are running."""

    def stats(self) -> EngineStats: ...

    def check_integrity(self) -> None:
        """Raise AssertionError unless free + cached + in-use KV slots == total."""

    async def shutdown(self) -> None: ...
