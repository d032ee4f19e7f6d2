"""The pure-decode fast path's parts (scheduler/decode_batch.py): the runner's batch from the slot
table equals the batch from SeqInputs, its forward equals forward() + logits() with each
attention backend path (the torch one with its dense decode K/V, the C kernel's), the CPU argmax
equals torch's, and a detokenizer that catches up on several tokens makes the text of adding
them one at a time."""
from __future__ import annotations

import random

import pytest
import torch

from radix_runtime.cache.slot_table import SlotTable
from radix_runtime.core.forward_batch import SeqInput
from radix_runtime.scheduler.sampling import argmax_rows
from radix_runtime.tokenizer import ByteDetokenizer, WindowDetokenizer
from tests.unit.runtime.test_decode_graph import CFG, runner, tiny_model

torch.set_num_threads(1)


def _table_and_seqs(lens: list[int], offset: int = 50):
    """A slot table whose rows hold each sequence's slots (distinct, scattered), its rows reused
    from former owners (stale slots past each length), and the equivalent decode SeqInputs."""
    table = SlotTable(rows=8, width=64)
    for r in range(8):  # a former owner of every row
        table.write(r, torch.arange(500, 564) - r)
    order = [5, 0, 3, 7, 1][:len(lens)]
    seqs, rows = [], []
    for i, (row, n) in enumerate(zip(order, lens)):
        slots = torch.tensor([offset + 9 * j + i for j in range(n)])
        table.write(row, slots)
        rows.append(row)
        seqs.append(SeqInput([3 + i], n - 1, slots))
    return table, seqs, torch.tensor(rows)


@pytest.mark.parametrize("kernel", [False, True])
def test_the_batch_from_the_slot_table_runs_what_seq_inputs_run(kernel):
    model = tiny_model(2)
    a, b = runner(model), runner(model)
    if kernel:
        assert a.backend.use_cpu_kernel() and b.backend.use_cpu_kernel()
    lens = [9, 4, 13, 6]
    table, seqs, rows = _table_and_seqs(lens)
    prompts = [SeqInput([(7 * j + i) % 60 for j in range(n - 1)], 0, s.kv_slots[:-1])
               for i, (n, s) in enumerate(zip(lens, seqs))]
    for r in (a, b):
        r.forward(prompts)  # the same K/V in both pools
    ids = torch.tensor([s.token_ids[0] for s in seqs])
    for step in range(3):  # consecutive steps: the dense decode K/V appends (torch backend)
        pos = torch.tensor([s.start_pos for s in seqs])
        new = torch.stack([s.kv_slots[-1] for s in seqs])
        addr = table.data.data_ptr() + rows * 8 * table.data.stride(0)
        fb = a.table_decode_batch(ids, pos, table.data, rows, addr, new)
        if not kernel:  # what batch() lays out: the padded table (0 past each length) and mask
            want = b.batch(seqs)[0]
            assert torch.equal(fb.decode_table, want.decode_table) and torch.equal(fb.decode_mask, want.decode_mask)
            assert torch.equal(fb.out_loc, want.out_loc)
        hidden, logits = a.forward_decode(fb)
        h2, _ = b.forward(seqs)
        assert torch.allclose(hidden, h2, atol=1e-5) and torch.allclose(logits, b.logits(h2, list(range(4))), atol=1e-5)
        ids = logits.argmax(-1)
        seqs = [SeqInput([int(ids[i])], s.start_pos + 1, torch.cat((s.kv_slots, torch.tensor([400 + 4 * step + i]))))
                for i, s in enumerate(seqs)]
        for row, s in zip(rows.tolist(), seqs):
            table.write(row, s.kv_slots)
    assert logits.shape == (4, CFG["vocab_size"])


def test_cpu_argmax_is_torchs_first_maximum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 768, generator=g)
    x[3, 10] = x[3, 700] = 99.0  # ties: the first
    x[5] = 1.0
    assert torch.equal(argmax_rows(x), x.argmax(-1))
    assert torch.equal(argmax_rows(x[::2]), x[::2].argmax(-1))  # a strided view
    assert argmax_rows(x).dtype == torch.int64
    assert torch.equal(argmax_rows(x.double()), x.double().argmax(-1))  # torch's path


class _Chars:
    """A tokenizer whose tokens are single characters (WindowDetokenizer's decode)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(0x61 + i % 26) if i < 100 else "\u00e9" for i in ids)


def test_detokenizers_catching_up_make_the_same_text(tiny_models):
    from radix_runtime.tokenizer import Tokenizer

    tok = Tokenizer(str(tiny_models["llama"]))
    rng = random.Random(0)
    for _ in range(20):  # random ids: byte tokens that split UTF-8 characters, specials too
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(1, 40))]
        one, chunked = ByteDetokenizer(tok), ByteDetokenizer(tok)
        for t in ids:
            one.add_one(t)
        k = 0
        while k < len(ids):
            n = rng.randrange(1, 8)
            chunked.add(ids[k:k + n])
            k += n
        assert one.flush() == chunked.flush() == tok.decode(ids)
    w1, w2 = WindowDetokenizer(_Chars()), WindowDetokenizer(_Chars())
    for t in range(30):
        w1.add_one(t)
    w2.add(list(range(30)))
    assert w1.flush() == w2.flush() == _Chars().decode(list(range(30)))
