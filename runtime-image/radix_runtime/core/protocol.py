"""The seam between the HTTP server (above) and the engine (scheduler + radix cache + model, below).

The server validates and tokenizes a request, turns it into an `EngineRequest` and iterates the
`EngineOutput`s the engine yields for it. Everything the server may ask of the engine is here, so
the two sides can change independently; `engine.radix_engine.RadixEngine` is the implementation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol

from ..tokenizer import Tokenizer
from .config import EngineConfig
from .request import EngineOutput, EngineRequest


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
    # KV slots held only by radix-cache entries no running request uses: evictable on demand, so
    # SGLang counts them as available, not used (a worker full of cache is not overloaded).
    evictable_kv_tokens: int = 0
    # speculative decoding (docs/speculative-decoding.md): None when off
    speculative_algorithm: str | None = None
    forward_passes_total: int = 0  # target-model forwards (steps)
    spec_drafts_total: int = 0  # verify rounds that had drafts (one per request and step)
    spec_draft_tokens_total: int = 0  # tokens proposed
    spec_accepted_tokens_total: int = 0  # of those, accepted by the target

    @property
    def used_kv_tokens(self) -> int:
        """SGLang's num_used_tokens: slots held, minus the evictable cache."""
        return max(0, round(self.token_usage * self.total_kv_tokens) - self.evictable_kv_tokens)

    @property
    def used_kv_fraction(self) -> float:
        """SGLang's token_usage: used_kv_tokens over the pool."""
        return self.used_kv_tokens / self.total_kv_tokens if self.total_kv_tokens else 0.0


class Engine(Protocol):
    config: EngineConfig
    tokenizer: Tokenizer
    context_length: int
    vocab_size: int  # the model's (config.json), for checking token ids
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
