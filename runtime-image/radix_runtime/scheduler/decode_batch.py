"""The running requests as one decode batch held in tensors across steps (SGLang's ScheduleBatch
kept between decode steps), so that a step of pure decoding touches each request only to hand it
its token.

While the running set stays the same and every request decodes, a step needs no plan, no
`SeqInput`s and no batch assembly: the input tokens are the last step's sampled ids (a tensor),
the positions a tensor advanced by one, the new KV slots one allocation written into the slot
table with one `put_` at precomputed flat indices, and the CPU kernel reads each row of the table
by an address computed once. The scheduler drops the batch whenever the running set changes (an
admission, a finish, an abort, a retraction) or the slot table is reallocated, and builds it again
at the next step where every request decodes.
"""
from __future__ import annotations

import torch

from ..cache.slot_table import SlotTable
from .request import Req
from .sampling import SampleRow


def decodes_plainly(r: Req) -> bool:
    """r's next step is one decode token whose handling needs nothing per step beyond its token:
    no grammar, logprobs, images or drafts, and its slots are exactly its context plus none."""
    return (bool(r.output_ids) and r.kv_len == len(r.input_ids) + len(r.output_ids) - 1
            and r.num_slots == r.kv_len and r.slot_row >= 0 and r.grammar is None
            and not r.return_logprob and not r.images and not r.embedding and not r.spec_k)


class DecodeBatch:
    def __init__(self, reqs: list[Req], table: SlotTable, context_length: int,
                 stop_ids: list[frozenset[int]], argmax_only: bool):
        self.reqs = reqs
        self.table = table
        self.pos = torch.tensor([r.kv_len for r in reqs], dtype=torch.int64)  # the tokens' positions
        self.max_pos = int(self.pos.max())
        table.ensure_width(self.max_pos + 1)
        self.data = table.data  # the table this batch's indices and addresses are into
        self.rows = rows = torch.tensor([r.slot_row for r in reqs], dtype=torch.int64)
        self.flat = rows * self.data.stride(0) + self.pos  # where each row's next slot goes
        self.addr = self.data.data_ptr() + rows * (8 * self.data.stride(0))  # each row, by address
        self.ids = torch.tensor([r.output_ids[-1] for r in reqs], dtype=torch.int64)  # input tokens
        # a token at or past its limit finishes its request (max_new_tokens, the context length)
        self.limits = [min(r.sampling.max_new_tokens, context_length - len(r.input_ids)) for r in reqs]
        self.stop_ids = stop_ids
        self.stop_strings = [bool(r.sampling.stop) for r in reqs]
        # every row's token is its logits' argmax; else the sampler's rows, built once (each row
        # holds its request's growing output list, which penalties and min_new_tokens read)
        self.sample_rows = None if argmax_only else [
            SampleRow(r.sampling, r.input_ids, r.output_ids, s, r.seed_gen) for r, s in zip(reqs, stop_ids)]

    def usable(self, table: SlotTable) -> bool:
        """Whether this batch still indexes the table (not reallocated since); first widens the
        table if this step's slots need it (which reallocates it: the batch is then rebuilt)."""
        if self.max_pos + 1 > table.data.shape[1]:
            table.ensure_width(self.max_pos + 1)
        return self.data is table.data

    def write_slots(self, new: torch.Tensor) -> None:
        """Each row's next slot (new[j] for row j) into the table; the requests now hold it."""
        self.data.view(-1).put_(self.flat, new)
        for r in self.reqs:
            r.num_slots += 1

    def advance(self, next_ids: torch.Tensor) -> None:
        """After the forward: next_ids are the next step's input tokens, one position on."""
        self.ids = next_ids
        self.pos = self.pos + 1  # new tensors: a forward batch may still hold the old ones
        self.flat = self.flat + 1
        self.max_pos += 1
