"""A request's state inside the scheduler.

Token bookkeeping: `fill_ids` = prompt + generated tokens. `kv_slots[:kv_len]` hold the KV of
fill_ids[:kv_len] (kv_slots: a view of the request's row of the scheduler's cache.SlotTable); the
first `cache_len` of those are owned by the radix tree (locked through `last_node`), the rest
belong to the request. A step extends fill_ids[kv_len:] (a prefill chunk,
or the single last sampled token when decoding); when it reaches the end of fill_ids the logits of
the last position sample the next token.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..cache.slot_table import SlotTable
from ..core.request import EngineRequest, SamplingParams
from .multimodal import image_keys

_EMPTY = torch.empty(0, dtype=torch.int64)


@dataclass
class Req:
    rid: str
    input_ids: list[int]
    sampling: SamplingParams
    return_logprob: bool = False
    top_logprobs_num: int = 0
    logprob_start_len: int = -1
    priority: int = 0
    embedding: bool = False
    stream: bool = True  # EngineRequest.stream: an update per token, else only now and then
    arrival: float = field(default_factory=time.monotonic)

    output_ids: list[int] = field(default_factory=list)
    # kv_slots (property below) = slot_table.data[slot_row, :num_slots]
    slot_table: SlotTable | None = None
    slot_row: int = -1  # -1: holds no slots
    num_slots: int = 0
    kv_len: int = 0
    cache_len: int = 0  # leading kv slots owned (and locked) by the radix tree
    last_node: object = None  # radix node locked for kv_slots[:cache_len]
    cached_tokens: int = 0  # prompt tokens that came from the cache on first admission
    admitted_once: bool = False
    num_retractions: int = 0
    wait_steps: int = 0  # scheduling rounds spent waiting (aging)
    match_len: int = 0  # scratch: prefix match length while ordering the queue

    finished: bool = False
    finish_reason: dict | None = None
    detok: object = None  # tokenizer.IncrementalDetokenizer's pick for this request
    detok_len: int = 0  # output tokens detok has seen (a non-streaming request's lag behind)
    text: str = ""
    output_logprobs: list[tuple[float, int]] = field(default_factory=list)
    output_top_logprobs: list[list[tuple[float, int]]] = field(default_factory=list)
    input_logprobs: list[tuple[float | None, int]] = field(default_factory=list)
    embedding_out: list[float] | None = None
    seed_gen: torch.Generator | None = None
    stop_ids: frozenset[int] | None = None  # EOS (unless ignore_eos) + stop_token_ids, once known
    plain_greedy: bool | None = None  # sampling.plain_greedy(sampling), once known
    grammar: object = None  # grammar.backend.GrammarState when the output is constrained
    # speculative decoding, this step only: draft tokens to verify (their KV slots follow the
    # decode slot in kv_slots) and, for NGRAM, the proposal itself (scheduler/speculative.py)
    spec_k: int = 0
    spec_draft: list[int] | None = None

    # images (images.ImageInput): the prompt's image tokens are keyed by image in the radix tree
    # and the model's input (prompt_keys), their features computed when first needed
    images: list = field(default_factory=list)
    prompt_keys: list[int] | None = None
    image_embeds: dict = field(default_factory=dict)  # image index -> features [n, hidden]

    @classmethod
    def from_engine(cls, r: EngineRequest) -> "Req":
        req = cls(rid=r.rid, input_ids=list(r.input_ids), sampling=r.sampling,
                  return_logprob=r.return_logprob, top_logprobs_num=r.top_logprobs_num,
                  logprob_start_len=r.logprob_start_len, priority=r.priority, embedding=r.embedding,
                  stream=r.stream)
        if r.images:
            req.images, req.prompt_keys = list(r.images), image_keys(r.input_ids, r.images)
        return req

    @property
    def kv_slots(self) -> torch.Tensor:
        """Slots of positions [0, num_slots): a view, valid until the table next changes."""
        if not self.num_slots:
            return _EMPTY
        return self.slot_table.row[self.slot_row][:self.num_slots]

    @kv_slots.setter
    def kv_slots(self, slots: torch.Tensor) -> None:
        """Copies slots into the row (taking one on the first slot, giving it back on none)."""
        n = slots.numel()
        if n == 0:
            if self.slot_row >= 0:
                self.slot_table.release(self.slot_row)
                self.slot_row = -1
        else:
            if self.slot_table is None:  # a request outside a scheduler: a table of its own
                self.slot_table = SlotTable(1, n)
            if self.slot_row < 0:
                self.slot_row = self.slot_table.acquire()
            self.slot_table.write(self.slot_row, slots)
        self.num_slots = n

    @property
    def fill_ids(self) -> list[int]:
        return (self.prompt_keys or self.input_ids) + self.output_ids

    @property
    def fill_len(self) -> int:
        return len(self.input_ids) + len(self.output_ids)

    @property
    def remaining(self) -> int:
        """Tokens still to run through the model before the next sample."""
        return self.fill_len - self.kv_len

    def match_limit(self) -> int:
        """How much of fill_ids may come from the cache: at least one token must run to give
        logits (or the embedding), and input logprobs need their positions computed."""
        limit = self.fill_len - 1
        if self.return_logprob and self.logprob_start_len >= 0 and not self.output_ids:
            # token s's logprob comes from the logits at position s - 1
            limit = min(limit, max(self.logprob_start_len - 1, 0))
        return max(limit, 0)

    def max_future_tokens(self) -> int:
        """Upper bound on KV this request still needs beyond what it holds."""
        if self.embedding:
            return self.remaining
        return self.remaining + max(self.sampling.max_new_tokens - len(self.output_ids), 0)
