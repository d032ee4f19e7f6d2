"""The Triton paged-attention kernels (layers/triton_attention.py) against the PyTorch reference
backend (TorchPagedAttention), on CPU tensors under Triton's interpreter: decode (GQA group sizes 1
and 4, lengths 1 and non-multiples of the block, several KV splits), extend (cached prefixes of 0
and > 0 tokens, ragged new-token counts), mixed batches, sliding windows, float32, float16 and
bfloat16; the KV sits in scattered pool slots, as the radix cache leaves it. The kernels are also
compiled ahead of time for sm_90 (tests/support/triton_aot.py). On a GPU machine,
RADIX_TRITON_TEST_DEVICE=cuda runs the same kernel cases compiled, on the card (bench/gpu_device.sh)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]

# Triton reads TRITON_INTERPRET when a function is decorated (triton.jit, at import: its own library
# functions such as tl.max too) and again at launch; a process that has imported triton one way
# cannot switch. So the kernel cases run in a process started with it set: this file run again in
# a subprocess (test_in_a_fresh_process); the rest of the session never sees an interpreted triton.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEV = torch.device(os.environ.get("RADIX_TRITON_TEST_DEVICE", "cpu"))
FRESH = INTERPRETED or DEV.type == "cuda"


def in_process(test):
    """Collected only in the fresh process (elsewhere the name is bound to None: not a test, not a skip)."""
    return test if FRESH else None


def interpreted_only(test):
    return test if INTERPRETED else None


def outer_only(test):
    return None if FRESH else test


if FRESH:
    from radix_runtime.layers import triton_attention as ta

from radix_runtime.cache.kv_pool import KVPool  # noqa: E402
from radix_runtime.core.forward_batch import ExtendSeq, ForwardBatch  # noqa: E402
from radix_runtime.layers.attention import TorchPagedAttention  # noqa: E402

torch.set_num_threads(1)
D = 16

TOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}


def _batch(shapes, h, kvh, dtype, seed=0, size=400):
    """A pool with each sequence's cached context in scattered slots, and the ForwardBatch of one
    step over shapes [(context length incl. new tokens, new tokens)], decodes (n == 1) first, as the
    model runner lays it out. -> (pool, fb, q, k, v)."""
    g = torch.Generator().manual_seed(seed)
    pool = KVPool(size, 1, kvh, D, dtype, DEV)
    perm = (torch.randperm(size, generator=g) + 1).to(DEV)
    slots, new_k, new_v, off = [], [], [], 0
    for lk, n in shapes:
        s = perm[off:off + lk]
        off += lk
        slots.append(s)
        kk = torch.randn(lk, kvh, D, generator=g).to(DEV, dtype)
        vv = torch.randn(lk, kvh, D, generator=g).to(DEV, dtype)
        pool.k[0][s[:lk - n]], pool.v[0][s[:lk - n]] = kk[:lk - n], vv[:lk - n]
        new_k.append(kk[lk - n:])
        new_v.append(vv[lk - n:])
    t = sum(n for _, n in shapes)
    q = torch.randn(t, h, D, generator=g).to(DEV, dtype)
    dec = [i for i, (_, n) in enumerate(shapes) if n == 1]
    fb = ForwardBatch(input_ids=torch.zeros(t, dtype=torch.long), positions=None,
                      out_loc=torch.cat([s[lk - n:] for s, (lk, n) in zip(slots, shapes)]),
                      num_decode=len(dec))
    assert dec == list(range(len(dec))), "decodes first"
    if dec:
        fb.decode_table = torch.nn.utils.rnn.pad_sequence([slots[i] for i in dec], batch_first=True)
        lens = torch.tensor([shapes[i][0] for i in dec], device=DEV)
        fb.decode_mask = torch.arange(fb.decode_table.shape[1], device=DEV)[None, :] < lens[:, None]
    q_start = len(dec)
    for i in range(len(dec), len(shapes)):
        fb.extends.append(ExtendSeq(q_start, shapes[i][1], slots[i]))
        q_start += shapes[i][1]
    return pool, fb, q, torch.cat(new_k), torch.cat(new_v)


def _reference(pool, fb, q, k, v, window=None):
    ref_pool = KVPool(pool.size, 1, pool.k[0].shape[1], D, pool.k[0].dtype, DEV)
    ref_pool.k[0].copy_(pool.k[0])
    ref_pool.v[0].copy_(pool.v[0])
    return TorchPagedAttention(ref_pool, D ** -0.5).forward(q, k, v, 0, fb, window)


def _max_err(a, b):
    return (a.float() - b.float()).abs().max().item()


@in_process
@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("splits", [1, 3, 8])
def test_decode(group, splits):
    kvh = 2
    shapes = [(1, 1), (5, 1), (16, 1), (17, 1), (61, 1)]  # 1, < / = / > one block of 16, several
    pool, fb, q, k, v = _batch(shapes, group * kvh, kvh, torch.float32, seed=group * 10 + splits)
    want = _reference(pool, fb, q, k, v)
    pool.write(0, fb.out_loc, k, v)
    got = ta.decode_attention(q, pool.k[0], pool.v[0], fb.decode_table, fb.decode_mask.sum(1),
                              D ** -0.5, num_splits=splits, block_n=16)
    assert _max_err(got, want) < TOL[torch.float32]


@in_process
def test_decode_sliding_window():
    pool, fb, q, k, v = _batch([(3, 1), (20, 1), (50, 1)], 8, 2, torch.float32, seed=3)
    want = _reference(pool, fb, q, k, v, window=7)
    pool.write(0, fb.out_loc, k, v)
    got = ta.decode_attention(q, pool.k[0], pool.v[0], fb.decode_table, fb.decode_mask.sum(1),
                              D ** -0.5, window=7, num_splits=2, block_n=16)
    assert _max_err(got, want) < TOL[torch.float32]


@in_process
@pytest.mark.parametrize("group", [1, 4])
def test_extend(group):
    # (context, new): fresh prefills of ragged lengths (one block and a bit, two blocks and a bit)
    # and extends over cached prefixes (shorter than a block, several blocks); blocks of 16
    shapes = [(5, 5), (33, 33), (27, 7), (61, 16), (40, 19)]
    kvh = 2
    pool, fb, q, k, v = _batch(shapes, group * kvh, kvh, torch.float32, seed=group)
    want = _reference(pool, fb, q, k, v)
    meta, slots, max_q = ta.extend_meta([s.q_start for s in fb.extends], [s.q_len for s in fb.extends],
                                        [s.kv_slots for s in fb.extends], DEV)
    pool.write(0, fb.out_loc, k, v)
    out = ta.extend_attention(q, k, v, pool.k[0], pool.v[0], meta, slots, max_q, D ** -0.5,
                              block_m=16, block_n=16)
    assert _max_err(out, want) < TOL[torch.float32]


@in_process
def test_one_token_extend():
    """An extend of one new token (the runner sends those as decodes, the kernel takes them too)."""
    pool, fb, q, k, v = _batch([(9, 1)], 4, 2, torch.float32, seed=5)
    want = _reference(pool, fb, q, k, v)
    s = fb.decode_table[0]
    meta, slots, max_q = ta.extend_meta([0], [1], [s], DEV)
    pool.write(0, fb.out_loc, k, v)
    out = ta.extend_attention(q, k, v, pool.k[0], pool.v[0], meta, slots, max_q, D ** -0.5,
                              block_m=16, block_n=16)
    assert _max_err(out, want) < TOL[torch.float32]


@in_process
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("window", [None, 6])
def test_mixed_batch_through_the_backend(dtype, window):
    """Decodes and extends in one step through TritonPagedAttention.forward (the model's call)."""
    shapes = [(1, 1), (23, 1), (40, 1), (18, 18), (30, 12), (9, 2)]
    pool, fb, q, k, v = _batch(shapes, 8, 2, dtype, seed=7)
    want = _reference(pool, fb, q, k, v, window)
    got = ta.TritonPagedAttention(pool, D ** -0.5).forward(q, k, v, 0, fb, window)
    assert got.dtype == dtype
    assert _max_err(got, want) < TOL[dtype]


@interpreted_only
def test_backend_choice(monkeypatch):
    from radix_runtime.layers.attention import make_backend

    pool = KVPool(8, 1, 1, D, torch.float32, "cpu")
    assert isinstance(make_backend(None, pool, 1.0, torch.device("cpu")), TorchPagedAttention)
    assert isinstance(make_backend("torch_native", pool, 1.0, torch.device("cpu")), TorchPagedAttention)
    assert isinstance(make_backend("triton", pool, 1.0, torch.device("cpu")), ta.TritonPagedAttention)
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        make_backend("triton", pool, 1.0, torch.device("cpu"))
    with pytest.raises(ValueError, match="torch_native, triton"):
        make_backend("flashinfer", pool, 1.0, torch.device("cpu"))


@in_process
def test_model_runner_steps_match_the_reference():
    """Two steps of a tiny 2-layer GQA model (head_dim 12, the second layer a sliding window of 4)
    through ModelRunner: prefills, then a decode, an extend over its own cached prefix and a
    prefill sharing another sequence's cached prefix; triton's hidden states equal torch_native's."""
    from radix_runtime.core.forward_batch import SeqInput
    from radix_runtime.executor.model_runner import ModelRunner
    from radix_runtime.models.llama import LlamaForCausalLM, ModelArgs

    cfg = dict(vocab_size=50, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=1, sliding_window=4,
               layer_types=["full_attention", "sliding_attention"], max_position_embeddings=64)
    torch.manual_seed(0)
    model = LlamaForCausalLM(ModelArgs(cfg))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    model.to(DEV)
    runners = [ModelRunner(model, KVPool(100, 2, 1, 12, torch.float32, DEV), DEV, name)
               for name in ("torch_native", "triton")]
    assert isinstance(runners[1].backend, ta.TritonPagedAttention)
    slots = torch.randperm(100)[:40] + 1
    s0, s1, s2 = slots[:11], slots[11:22], torch.cat((slots[:8], slots[22:25]))
    ids = torch.randint(0, 50, (12,)).tolist()
    steps = [
        [SeqInput(ids[:10], 0, s0[:10]), SeqInput(ids[:6], 0, s1[:6])],
        [SeqInput(ids[10:11], 10, s0), SeqInput(ids[6:11], 6, s1), SeqInput(ids[8:11], 8, s2)],
    ]
    for seqs in steps:
        (want, _), (got, _) = (r.forward(seqs) for r in runners)
        assert _max_err(got, want) < 1e-4


def test_the_flag():
    from radix_runtime.launch_server import engine_config, parse_args

    assert engine_config(parse_args(["--model-path", "m"], env={})).attention_backend is None
    args = parse_args(["--model-path", "m", "--attention-backend", "triton"], env={})
    assert engine_config(args).attention_backend == "triton"



@outer_only
def test_kernels_compile_for_hopper():
    """The interpreter runs the kernels as numpy, so it misses what only the compiler checks (types
    of loop bounds, dot shapes and precisions, shared memory): tests/support/triton_aot.py compiles
    each kernel ahead of time for sm_90 (no GPU needed), in a process without the interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-m", "tests.support.triton_aot", "bf16", "fp32"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    shared = [int(line.split()[-1]) for line in r.stdout.splitlines()]
    assert len(shared) == 6 and max(shared) <= 100 * 1024  # fits consumer GPUs' shared memory too


@outer_only
def test_in_a_fresh_process():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                       cwd=ROOT, env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1] and "failed" not in r.stdout.splitlines()[-1]
