"""The C decode kernel (layers/cpu_decode_attention.py) against the torch backend's decode, over
scattered pool slots: GQA groups 1 and 4, head dims 8 to 64, lengths 1 and ragged, sliding
windows; and when the backend takes it (float32 CPU pools, head_dim % 8 == 0)."""
from __future__ import annotations

import sys

import pytest
import torch

from radix_runtime.cache.kv_pool import KVPool
from radix_runtime.core.forward_batch import ForwardBatch
from radix_runtime.layers import cpu_decode_attention as cda
from radix_runtime.layers.attention import TorchPagedAttention
from tests.unit.runtime.test_decode_kv import decode_fb

torch.set_num_threads(1)


def test_the_kernel_builds_here_and_leaves_the_process_floating_point_state_alone():
    assert cda.load() is not None  # this machine: x86-64 with AVX2/FMA and a C compiler
    # A library built with -ffast-math turns on flush-to-zero for the whole process when loaded:
    # subnormals would then read as 0 everywhere (numpy, torch, Python floats).
    assert sys.float_info.min / 2 > 0 and torch.tensor(1e-45, dtype=torch.float32).item() > 0


# head dims: one the kernel's V tile does not special-case (8, 40: the generic tail), those it
# does (16, 32, 64) and one it does in parts (128 = 2 x 64)
@pytest.mark.parametrize("h,kvh,d", [(4, 4, 8), (8, 2, 16), (2, 1, 32), (4, 1, 64), (2, 2, 40),
                                     (4, 2, 128)])
@pytest.mark.parametrize("window", [None, 5])
def test_equals_the_torch_decode(h, kvh, d, window):
    g = torch.Generator().manual_seed(h * d)
    pool = KVPool(900, 1, kvh, d, torch.float32, "cpu")
    pool.k[0].normal_(generator=g)
    pool.v[0].normal_(generator=g)
    perm = (torch.randperm(900, generator=g) + 1).tolist()
    lens = [1, 7, 30, 64, 3, 333]  # 333: the prefetching loops and their tails
    tables, off = [], 0
    for n in lens:
        tables.append(perm[off:off + n])
        off += n
    fb = decode_fb(tables)
    q = torch.randn(len(lens), h, d, generator=g)
    ref = TorchPagedAttention(pool, d ** -0.5)
    ref.dense = None  # the gather path
    k_new, v_new = pool.k[0][fb.out_loc].clone(), pool.v[0][fb.out_loc].clone()  # rewrite the same
    want = ref.forward(q, k_new, v_new, 0, fb, window)
    got = cda.decode_attention(cda.load(), q, pool.k[0], pool.v[0], cda.table_rows(fb.decode_table),
                               torch.tensor(lens), d ** -0.5, window)
    assert torch.allclose(got, want, atol=1e-5)
    fast = TorchPagedAttention(pool, d ** -0.5)
    assert fast.use_cpu_kernel() and fast.dense is None
    assert torch.allclose(fast.forward(q, k_new, v_new, 0, fb, window), want, atol=1e-5)
    # the slot lists handed over as they are (no table, no out_loc): the kernel writes the new
    # K/V to each list's last slot itself
    slots = [torch.tensor(t) for t in tables]
    k2, v2 = torch.randn_like(k_new), torch.randn_like(v_new)
    want = ref.forward(q, k2, v2, 0, fb, window)
    pool.k[0][fb.out_loc], pool.v[0][fb.out_loc] = k_new, v_new  # undo ref's write
    rows_fb = ForwardBatch(input_ids=fb.input_ids, positions=fb.positions, out_loc=None,
                           num_decode=len(lens), decode_lens=torch.tensor(lens),
                           decode_rows=cda.slot_rows(slots), decode_slots=slots)
    got = fast.forward(q, k2, v2, 0, rows_fb, window)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(pool.k[0][fb.out_loc], k2) and torch.equal(pool.v[0][fb.out_loc], v2)


def test_when_the_backend_takes_it():
    assert not TorchPagedAttention(KVPool(10, 1, 2, 8, torch.float64, "cpu"), 1.0).use_cpu_kernel()
    assert not TorchPagedAttention(KVPool(10, 1, 2, 12, torch.float32, "cpu"), 1.0).use_cpu_kernel()
    assert cda.slot_rows([torch.arange(3), torch.arange(6)[::2]]) is None  # not contiguous
    assert cda.slot_rows([torch.arange(3, dtype=torch.int32)]) is None
    with pytest.raises(ValueError, match="multiple of 8"):
        cda.decode_attention(cda.load(), torch.zeros(1, 2, 12), torch.zeros(3, 2, 12),
                             torch.zeros(3, 2, 12), torch.ones(1, 1, dtype=torch.long),
                             torch.ones(1, dtype=torch.long), 1.0)
