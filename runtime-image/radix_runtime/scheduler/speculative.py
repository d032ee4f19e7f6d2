"""Speculative decoding (docs/speculative-decoding.md): a proposer drafts up to k tokens for a
decoding request, the target scores the decode token and the drafts in the step's one forward
(next to the other requests' prefills and decodes), and `verify` keeps the drafts the target
accepts plus one token of the target's own, so a round yields 1..k+1 tokens.

Verification is the standard rejection rule (Leviathan et al. 2023, Chen et al. 2023): draft token
d drawn from the draft's distribution q is accepted with probability min(1, p(d) / q(d)) under the
target's distribution p; the first rejected position draws from norm(max(0, p - q)) instead; all
accepted, the last position draws from p. The output is then distributed exactly as the target's
own sampling. p and q are what `sample` would draw from (penalties, temperature, top-k/p, min-p,
with the drafts before a position counted as output); greedy rows are one-hot, so greedy output is
the target's argmax token for token.

Proposers:
- `DraftModelProposer` (STANDALONE): a smaller model with the same tokenizer. Its KV pool is
  indexed by the same slots as the target's, so the radix tree's cached slots and each request's
  page table serve both; it mirrors every forward the target runs (prefill chunks, plain decodes)
  and runs k + 1 forwards per round: the decode token, then each draft (the last only writes its
  KV, so a fully accepted round leaves the draft's cache complete).
- `NgramProposer` (NGRAM, prompt lookup): the tokens that followed the most recent earlier
  occurrence of the longest suffix n-gram of the request's own prompt + output. No model; its
  q is one-hot.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from ..core.forward_batch import SeqInput
from .request import Req
from .sampling import SampleRow, distribution, draw

RowOf = Callable[[Req, list[int]], SampleRow]  # the request's SampleRow with extra output tokens


def ngram_lookup(ids: list[int], limit: int, min_window: int, max_window: int) -> list[int]:
    """Up to `limit` tokens following the most recent earlier occurrence of the longest suffix of
    ids (between min_window and max_window tokens long) that occurred before; [] if none."""
    n = len(ids)
    if limit <= 0 or n < min_window + 1:
        return []
    arr = np.asarray(ids)
    best_len, best_end = 0, -1
    for e in np.flatnonzero(arr[:-1] == arr[-1])[::-1].tolist():  # earlier ends, most recent first
        m = 1
        while m < max_window and m <= e and ids[e - m] == ids[n - 1 - m]:
            m += 1
        if m > best_len:
            best_len, best_end = m, e
            if m == max_window:
                break
    if best_len < min_window:
        return []
    return ids[best_end + 1:best_end + 1 + limit]


def verify(p: torch.Tensor, drafts: list[int], q: torch.Tensor | None, greedy: bool,
           generator: torch.Generator | None) -> tuple[int, int]:
    """p: the target's distributions [k+1, V] at the decode token and each draft; q: the draft's
    [k, V] (None: one-hot at each draft). -> (drafts accepted, the token that follows them)."""
    for j, d in enumerate(drafts):
        pd = float(p[j, d])
        qd = 1.0 if q is None else float(q[j, d])
        if pd >= qd or (not greedy and float(torch.rand(1, generator=generator)) * qd < pd):
            continue
        if greedy:
            return j, int(p[j].argmax())
        qj = q[j] if q is not None else torch.zeros_like(p[j]).index_fill_(0, torch.tensor([d], device=p.device), 1.0)
        residual = (p[j] - qj).clamp_(min=0)
        if float(residual.sum()) <= 0:
            residual = p[j]
        return j, int(draw(residual[None], [generator])[0])
    k = len(drafts)
    if greedy:
        return k, int(p[k].argmax())
    return k, int(draw(p[k:k + 1], [generator])[0])


class NgramProposer:
    def __init__(self, num_drafts: int, min_window: int, max_window: int):
        self.num_drafts, self.min_window, self.max_window = num_drafts, min_window, max_window

    def plan(self, r: Req, limit: int) -> int:
        # token ids (fill_ids may hold image keys in place of a prompt's image tokens)
        ids = r.input_ids + r.output_ids
        r.spec_draft = ngram_lookup(ids, min(limit, self.num_drafts), self.min_window, self.max_window)
        return len(r.spec_draft)

    def propose(self, reqs: list[Req], mirror: list[SeqInput], row_of: RowOf,
                generator: torch.Generator) -> list[torch.Tensor | None]:
        return [None] * len(reqs)


class DraftModelProposer:
    def __init__(self, runner, num_drafts: int):
        self.runner, self.num_drafts = runner, num_drafts  # runner: the draft's ModelRunner

    def plan(self, r: Req, limit: int) -> int:
        return min(limit, self.num_drafts)

    @torch.inference_mode()
    def propose(self, reqs: list[Req], mirror: list[SeqInput], row_of: RowOf,
                generator: torch.Generator) -> list[torch.Tensor | None]:
        """Fills each r.spec_draft with r.spec_k tokens; returns their q's [spec_k, V]. `mirror`:
        the step's other sequences, run through the draft so its KV keeps up with the target's."""
        # a text-only draft sees image positions as token 0 (only acceptance can suffer)
        seqs = [replace(s, all_logits=False, **({"embeds": []} if getattr(s, "embeds", None) else {}))
                for s in mirror]
        seqs += [SeqInput([r.fill_ids[r.kv_len]], r.kv_len, r.kv_slots[:r.kv_len + 1]) for r in reqs]
        if not seqs:
            return []
        last, _ = self.runner.forward(seqs)
        hidden = last[len(mirror):]
        active = list(range(len(reqs)))
        qs: list[list[torch.Tensor]] = [[] for _ in reqs]
        for r in reqs:
            r.spec_draft = []
        j = 1
        while active:
            rows = [row_of(reqs[i], reqs[i].spec_draft) for i in active]
            q = distribution(self.runner.logits(hidden, list(range(len(active)))), rows)
            tokens = draw(q, [row.generator for row in rows], generator).tolist()
            for a, i in enumerate(active):
                reqs[i].spec_draft.append(tokens[a])
                qs[i].append(q[a])
            last, _ = self.runner.forward([
                SeqInput([reqs[i].spec_draft[-1]], reqs[i].kv_len + j, reqs[i].kv_slots[:reqs[i].kv_len + j + 1])
                for i in active])
            keep = [a for a, i in enumerate(active) if reqs[i].spec_k > j]
            hidden, active = last[keep], [active[a] for a in keep]
            j += 1
        return [torch.stack(q) for q in qs]
