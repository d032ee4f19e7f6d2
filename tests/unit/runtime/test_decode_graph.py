"""Decode graphs (executor/decode_graph.py): bucket choice and padding, the CUDA graphs' static
inputs (filled and run eagerly here: the captured graph runs exactly this batch), the compiled CPU
decode against eager, and the flags."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from radix_runtime.cache.kv_pool import KVPool
from radix_runtime.core.config import EngineConfig
from radix_runtime.core.forward_batch import SeqInput
from radix_runtime.executor.decode_graph import (StaticDecodeInputs, bucket_for, capture_sizes,
                                                 pad_rows, supports)
from radix_runtime.executor.model_runner import ModelRunner, make_decode_graphs
from radix_runtime.models.llama import LlamaForCausalLM, ModelArgs

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[3]
CPU = torch.device("cpu")
CFG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(ModelArgs(CFG)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model


def runner(model, **flags) -> ModelRunner:
    config = EngineConfig(model_path="unused", **flags) if flags else None
    return ModelRunner(model, KVPool(600, 2, 2, 8, torch.float32, "cpu"), CPU, config=config)


def test_capture_sizes_and_buckets():
    assert capture_sizes(32) == [1, 2, 4, 8, 16, 24, 32]
    assert capture_sizes(20) == [1, 2, 4, 8, 16, 20]
    assert capture_sizes(1) == [1]
    assert capture_sizes(6) == [1, 2, 4, 6]
    sizes = capture_sizes(32)
    assert [bucket_for(n, sizes) for n in (1, 3, 8, 9, 17, 24, 32, 33)] == [1, 4, 8, 16, 24, 24, 32, None]
    with pytest.raises(ValueError, match=">= 1"):
        capture_sizes(0)


def test_pad_rows():
    t = torch.tensor([[1, 2], [3, 4]])
    assert pad_rows(t, 2) is t
    assert pad_rows(t, 4, 7).tolist() == [[1, 2], [3, 4], [7, 7], [7, 7]]


def decode_seqs(n: int, length: int, offset: int = 0) -> list[SeqInput]:
    """n decoding sequences with contexts of length + i tokens, the new one last, in
    scattered slots (sequence i's slot j: 1 + offset + 7 * j + i, distinct over i < 7)."""
    return [SeqInput([5 + i], length + i - 1,
                     torch.tensor([1 + offset + 7 * j + i for j in range(length + i)]))
            for i in range(n)]


def test_static_inputs_fill_and_pad():
    r = runner(tiny_model())
    fb, _ = r.batch(decode_seqs(3, 5))
    st = StaticDecodeInputs(max_bs=8, max_ctx=16, device=CPU)
    st.table.fill_(99)  # stale columns stay; lengths and the mask hide them
    st.fill(fb, 4)
    sb = st.batch(4)
    assert st.batch(4) is sb and sb.num_decode == 4
    assert sb.input_ids.data_ptr() == st.input_ids.data_ptr()  # views of the static buffers
    assert sb.input_ids.tolist() == [5, 6, 7, 0]
    assert sb.positions.tolist() == [4, 5, 6, 0]
    assert sb.out_loc.tolist() == fb.out_loc.tolist() + [0]  # the pad row writes scratch slot 0
    assert sb.decode_lens.tolist() == [5, 6, 7, 1]
    assert sb.decode_mask.sum(1).tolist() == [5, 6, 7, 1]
    assert torch.equal(sb.decode_table[:3, :7], fb.decode_table)
    assert sb.decode_table[3, 0] == 0 and sb.decode_table[0, 7] == 99
    with pytest.raises(ValueError, match="exceeds"):
        st.fill(r.batch(decode_seqs(1, 17))[0], 1)


def test_static_padded_batch_gives_the_unpadded_batch_outputs():
    """What a captured graph runs: the model over the static batch of bucket 4 holding 3 real rows
    (full-width page table, the torch backend's GPU gather path). The real rows' hidden states equal
    those of the plain batch, and the pad row only writes slot 0."""
    model = tiny_model()
    eager, static = runner(model), runner(copy.deepcopy(model))
    static.backend.dense = None  # as on a GPU: read through the table
    seqs = decode_seqs(3, 6)
    for r in (eager, static):  # the contexts' K/V: one prefill per sequence
        r.forward([SeqInput(list(range(1, s.start_pos + 1)), 0, s.kv_slots[:-1]) for s in seqs])
    pool_before = [k.clone() for k in static.pool.k]
    want, _ = eager.forward(seqs)
    st = StaticDecodeInputs(max_bs=8, max_ctx=32, device=CPU)
    st.fill(static.batch(seqs)[0], 4)
    with torch.inference_mode():
        got = static.model(st.batch(4))
    assert torch.allclose(got[:3], want, atol=1e-5)
    changed = [(k != k0).any(-1).any(-1).nonzero().flatten().tolist() for k, k0 in zip(static.pool.k, pool_before)]
    new_slots = sorted([0] + [int(s.kv_slots[-1]) for s in seqs])
    assert all(c == new_slots or c == new_slots[1:] for c in changed)  # slot 0 may get zeros


def triton_static_steps() -> None:
    """Two decode steps of 3 sequences in bucket 4's static batch through the triton backend (what
    a CUDA graph replays: the kernel reads the static page table and decode_lens), equal to the
    torch backend on the plain batches. Needs TRITON_INTERPRET=1 from the process start."""
    model = tiny_model()
    ref = runner(model)
    tri = ModelRunner(copy.deepcopy(model), KVPool(600, 2, 2, 8, torch.float32, "cpu"), CPU, "triton")
    seqs = decode_seqs(3, 6)
    for r in (ref, tri):
        r.forward([SeqInput(list(range(1, s.start_pos + 1)), 0, s.kv_slots[:-1]) for s in seqs])
    st = StaticDecodeInputs(max_bs=8, max_ctx=32, device=CPU)
    for step in range(2):
        want, _ = ref.forward(seqs)
        st.fill(tri.batch(seqs)[0], 4)
        with torch.inference_mode():
            got = tri.model(st.batch(4))
        assert torch.allclose(got[:3], want, atol=1e-4), step
        seqs = [SeqInput([7], s.start_pos + 1, torch.cat((s.kv_slots, s.kv_slots[-1:] + 300))) for s in seqs]


def test_static_batch_through_the_triton_kernels():
    code = "from tests.unit.runtime.test_decode_graph import triton_static_steps as t; t(); print('ok')"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_compiled_decode_equals_eager():
    """--enable-torch-compile with one bucket (max bs 4): batches of 4 (no padding), then 3 (one
    pad row), then 5 (over the max: eager) decode the same greedy tokens as the eager runner,
    with logits within float32 rounding."""
    model = tiny_model(1)
    eager, compiled = runner(model), runner(copy.deepcopy(model), enable_torch_compile=True,
                                            torch_compile_max_bs=4)
    assert compiled.graphs.sizes == [1, 2, 4]
    seqs = decode_seqs(5, 4, offset=100)
    prompts = [SeqInput(list(range(1 + i, 1 + i + s.start_pos)), 0, s.kv_slots[:-1]) for i, s in enumerate(seqs)]
    for r in (eager, compiled):
        r.forward(prompts)
    toks = [s.token_ids[0] for s in seqs]
    for step, n in enumerate([4, 4, 3, 3, 5]):
        batch = [SeqInput([toks[i]], s.start_pos + step, torch.tensor(
            [1 + 100 + 7 * j + i for j in range(s.start_pos + step + 1)])) for i, s in enumerate(seqs[:n])]
        (h0, _), (h1, _) = eager.forward(batch), compiled.forward(batch)
        rows = list(range(n))
        l0, l1 = eager.logits(h0, rows), compiled.logits(h1, rows)
        assert l1.shape == l0.shape == (n, CFG["vocab_size"])
        assert torch.allclose(l1, l0, atol=1e-4), step
        assert torch.equal(l1.argmax(-1), l0.argmax(-1)), step
        assert torch.allclose(compiled.logits(h1, [n - 1, 0]), l0[[n - 1, 0]], atol=1e-4)
        toks[:n] = l0.argmax(-1).tolist()
    assert set(compiled.graphs.compiled) == {4}  # 3 and 4 shared bucket 4; 5 ran eager


def test_choice_of_runner():
    model = tiny_model()
    assert make_decode_graphs(None, model, CPU, None) is None
    assert make_decode_graphs(EngineConfig(model_path="m"), model, CPU, None) is None
    # --cuda-graph-max-bs on CPU changes nothing (as in SGLang)
    assert make_decode_graphs(EngineConfig(model_path="m", cuda_graph_max_bs=8), model, CPU, None) is None
    assert supports(model) is None
    with pytest.raises(ValueError, match="--cuda-graph-max-bs needs --attention-backend triton"):
        make_decode_graphs(EngineConfig(model_path="m", cuda_graph_max_bs=8), model,
                           torch.device("cuda"), "torch_native")
    with pytest.raises(ValueError, match="--enable-torch-compile: Linear is not a Llama-family decoder"):
        make_decode_graphs(EngineConfig(model_path="m", enable_torch_compile=True),
                           torch.nn.Linear(2, 2), CPU, None)
    with pytest.raises(ValueError, match="--torch-compile-max-bs 0"):
        make_decode_graphs(EngineConfig(model_path="m", torch_compile_max_bs=0), model, CPU, None)


def test_the_flags(capsys):
    from radix_runtime.launch_server import engine_config, parse_args

    cfg = engine_config(parse_args(["--model-path", "m"], env={}))
    assert (cfg.enable_torch_compile, cfg.torch_compile_max_bs, cfg.cuda_graph_max_bs,
            cfg.disable_cuda_graph) == (False, 32, None, False)
    cfg = engine_config(parse_args(["--model-path", "m", "--enable-torch-compile", "--torch-compile-max-bs",
                                    "8", "--cuda-graph-max-bs", "64", "--disable-cuda-graph"], env={}))
    assert (cfg.enable_torch_compile, cfg.torch_compile_max_bs, cfg.cuda_graph_max_bs,
            cfg.disable_cuda_graph) == (True, 8, 64, True)
    for flag in ("--torch-compile-max-bs", "--cuda-graph-max-bs"):
        for bad in ("0", "x"):
            with pytest.raises(SystemExit):
                parse_args(["--model-path", "m", flag, bad], env={})
            assert flag in capsys.readouterr().err
