"""What the scheduler asks of one model forward (`SeqInput`s), and the same batch laid out as
tensors on the model's device (`ForwardBatch`).

Tokens are laid out decode-first: the first `num_decode` tokens are one token each of the decoding
sequences, then each extend (prefill chunk) sequence's new tokens back to back. Every sequence reads
its whole context from the KV pool through its slot list (its page table, page size 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SeqInput:
    token_ids: list[int]  # the tokens to run now
    start_pos: int  # position of the first of them (= tokens already in the KV cache)
    kv_slots: torch.Tensor  # slots of positions [0, start_pos + len(token_ids)), new ones last
    all_logits: bool = False  # return logits for every new position (input logprobs)
    # image-token embeddings among token_ids: (index in token_ids, embeddings [n, hidden]);
    # those positions' ids are keys (negative), not tokens (scheduler/multimodal.py)
    embeds: list[tuple[int, torch.Tensor]] = field(default_factory=list)


@dataclass
class ExtendSeq:
    q_start: int  # offset of its first new token in the flat token array
    q_len: int  # new tokens this step
    kv_slots: torch.Tensor  # [prefix + q_len] slots of its whole context, new tokens last


@dataclass
class ForwardBatch:
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    out_loc: torch.Tensor | None  # [T] KV slots the new tokens are written to (None: decode_rows)
    num_decode: int = 0
    decode_table: torch.Tensor | None = None  # [B_dec, max_len] slots, padded with slot 0
    decode_mask: torch.Tensor | None = None  # [B_dec, max_len] True where a real slot
    # [B_dec] context lengths, given by a static batch (CUDA graphs: a buffer refilled each step)
    decode_lens: torch.Tensor | None = None
    # CPU decode kernel (layers/cpu_decode_attention.py): instead of decode_table and out_loc, the
    # addresses of each decode sequence's slot list (decode_slots, held here so they stay alive)
    decode_rows: torch.Tensor | None = None
    decode_slots: list[torch.Tensor] | None = None
    extends: list[ExtendSeq] = field(default_factory=list)
    mm_index: torch.Tensor | None = None  # [M] rows of input_ids whose embeddings are mm_embeds
    mm_embeds: torch.Tensor | None = None  # [M, hidden] (image features)
