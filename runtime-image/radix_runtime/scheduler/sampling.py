"""Batched sampling: one row of logits per request that samples this step.

Order (as SGLang/vLLM): logit_bias, repetition penalty (prompt + output tokens), frequency and
presence penalties (output tokens), min_new_tokens masking of stop tokens, then greedy argmax or
temperature -> top_k -> top_p -> min_p -> inverse-CDF sampling with one uniform draw per row, drawn
from the request's own generator when it has a seed (so its output does not depend on the batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.request import SamplingParams


@dataclass
class SampleRow:
    params: SamplingParams
    prompt_ids: list[int]
    output_ids: list[int]
    stop_ids: set[int]  # EOS (unless ignore_eos) + stop_token_ids: masked below min_new_tokens
    generator: torch.Generator | None = None


def unpenalized(p: SamplingParams) -> bool:
    """Nothing changes the logits before the draw (no bias, no penalties): the row's token
    depends on its logits and its parameters only, not on the tokens so far."""
    return (not p.logit_bias and p.repetition_penalty == 1.0 and not p.frequency_penalty
            and not p.presence_penalty)


def plain_greedy(p: SamplingParams) -> bool:
    """Greedy and unpenalized: the token is the argmax, once min_new_tokens no longer masks stop
    tokens."""
    return p.temperature < 1e-6 and unpenalized(p)


def argmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """logits [B, V] -> each row's argmax [B] (int64, CPU; the first of equal maxima, as
    torch.argmax). On CPU through numpy: torch's CPU argmax takes ~30 us for 32 x 768 float32
    logits, numpy's ~3 us, which is a tenth of a tiny model's decode step."""
    if logits.device.type == "cpu" and logits.dtype == torch.float32 and logits.dim() == 2:
        return torch.from_numpy(logits.detach().numpy().argmax(1))
    return logits.argmax(-1).cpu()


def apply_penalties(logits: torch.Tensor, rows: list[SampleRow]) -> torch.Tensor:
    """In place on float32 logits [B, V]; only rows that ask for something cost anything."""
    vocab = logits.shape[1]
    dev = logits.device
    for i, r in enumerate(rows):
        p = r.params
        if p.logit_bias:
            ids = torch.tensor([int(t) for t in p.logit_bias if 0 <= int(t) < vocab], device=dev, dtype=torch.long)
            vals = torch.tensor([float(v) for t, v in p.logit_bias.items() if 0 <= int(t) < vocab], device=dev)
            logits[i].index_add_(0, ids, vals)
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(r.prompt_ids) | set(r.output_ids)), device=dev, dtype=torch.long)
            if seen.numel():
                x = logits[i, seen]
                logits[i, seen] = torch.where(x > 0, x / p.repetition_penalty, x * p.repetition_penalty)
        if (p.frequency_penalty or p.presence_penalty) and r.output_ids:
            counts = torch.bincount(torch.tensor(r.output_ids, device=dev), minlength=vocab)[:vocab].float()
            logits[i] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).float()
        if len(r.output_ids) < p.min_new_tokens and r.stop_ids:
            ids = torch.tensor([t for t in r.stop_ids if 0 <= t < vocab], device=dev, dtype=torch.long)
            logits[i, ids] = float("-inf")
    return logits


def sample(logits: torch.Tensor, rows: list[SampleRow], generator: torch.Generator | None = None) -> torch.Tensor:
    """logits: float32 [B, V] (modified in place). Returns next token ids [B] (int64, on CPU)."""
    logits = apply_penalties(logits, rows)
    greedy = torch.tensor([r.params.temperature < 1e-6 for r in rows])
    out = torch.empty(len(rows), dtype=torch.int64)
    if greedy.any():
        out[greedy] = argmax_rows(logits[greedy.to(logits.device)])
    if greedy.all():
        return out
    idx = (~greedy).nonzero().flatten()
    sub = [rows[i] for i in idx.tolist()]
    dev = logits.device
    probs_sorted, order = _filtered_sorted(logits[idx.to(dev)], sub)
    vocab = probs_sorted.shape[1]
    cdf = probs_sorted.cumsum(-1)
    u = torch.rand(len(sub), generator=generator)  # one draw for all unseeded rows
    for j, r in enumerate(sub):
        if r.generator is not None:
            u[j] = torch.rand(1, generator=r.generator).item()
    u = u.to(dev) * cdf[:, -1]
    pick = torch.searchsorted(cdf, u[:, None]).clamp_(max=vocab - 1)
    out[idx] = order.gather(1, pick).flatten().cpu()
    return out


def _filtered_sorted(x: torch.Tensor, sub: list[SampleRow]) -> tuple[torch.Tensor, torch.Tensor]:
    """Temperature, top_k, top_p, min_p on penalized logits x [B, V] -> (the kept probabilities,
    not renormalized, sorted descending; the vocabulary order they are sorted in)."""
    dev = x.device
    temp = torch.tensor([r.params.temperature for r in sub], device=dev)
    probs = torch.softmax(x / temp[:, None], dim=-1)
    probs_sorted, order = probs.sort(dim=-1, descending=True)
    vocab = probs.shape[1]
    ranks = torch.arange(vocab, device=dev)[None, :]
    top_k = torch.tensor([r.params.top_k if r.params.top_k > 0 else vocab for r in sub], device=dev)
    top_p = torch.tensor([r.params.top_p for r in sub], device=dev)
    min_p = torch.tensor([r.params.min_p for r in sub], device=dev)
    keep = ranks < top_k[:, None]
    # keep a token while the mass before it is below top_p (the first token always survives)
    keep &= (probs_sorted.cumsum(-1) - probs_sorted) < top_p[:, None]
    keep &= probs_sorted >= min_p[:, None] * probs_sorted[:, :1]
    return probs_sorted * keep, order


def distribution(logits: torch.Tensor, rows: list[SampleRow]) -> torch.Tensor:
    """The distribution `sample` draws each row from, as float32 probabilities [B, V] in vocabulary
    order (one-hot at the argmax for greedy rows). logits are modified in place (penalties).
    Speculative decoding verifies drafts against it (scheduler/speculative.py)."""
    logits = apply_penalties(logits, rows)
    out = torch.zeros_like(logits)
    greedy = torch.tensor([r.params.temperature < 1e-6 for r in rows], device=logits.device)
    if greedy.any():
        g = greedy.nonzero().flatten()
        out[g, logits[g].argmax(-1)] = 1.0
    if not greedy.all():
        idx = (~greedy).nonzero().flatten()
        kept, order = _filtered_sorted(logits[idx], [rows[i] for i in idx.tolist()])
        out[idx] = torch.zeros_like(kept).scatter_(1, order, kept / kept.sum(-1, keepdim=True))
    return out


def draw(probs: torch.Tensor, generators: list[torch.Generator | None],
         default: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of probabilities [B, V] (need not sum to 1), by inverse CDF with one
    uniform draw per row from the row's generator (else `default`). -> ids [B] (int64, CPU)."""
    u = torch.rand(len(generators), generator=default)
    for j, g in enumerate(generators):
        if g is not None:
            u[j] = torch.rand(1, generator=g).item()
    cdf = probs.float().cumsum(-1)
    pick = torch.searchsorted(cdf, (u.to(probs.device) * cdf[:, -1])[:, None], right=True)
    return pick.clamp_(max=probs.shape[1] - 1).flatten().cpu()


def logprobs_of(logits: torch.Tensor, ids: torch.Tensor, top_n: int = 0):
    """log_softmax of raw logits: the chosen ids' logprobs [B] and, if top_n, the best (lp, id)."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    chosen = lp.gather(1, ids.to(lp.device)[:, None]).flatten().cpu()
    top = None
    if top_n > 0:
        v, i = lp.topk(min(top_n, lp.shape[1]), dim=-1)
        top = (v.cpu(), i.cpu())
    return chosen, top
