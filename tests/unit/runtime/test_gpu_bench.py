"""bench/gpu.py's CPU-independent parts: flags, the checkpoint shape, the roofline arithmetic and
the latency bookkeeping (the GPU run itself is not a test)."""
from __future__ import annotations

import math

import pytest

from bench import gpu


def test_defaults_are_the_gpu_workload_and_tiny_shrinks_it():
    a = gpu.parse_args([])
    assert (a.device, a.prompts, a.input_len, a.output_len, a.dtype) == ("cuda", 256, 512, 128, "bfloat16")
    assert gpu.shape(a) == gpu.LLAMA_3_1_8B
    t = gpu.parse_args(["--tiny"])
    assert (t.device, t.prompts, t.input_len, t.output_len) == ("cpu", 8, 64, 16)
    assert gpu.shape(t) == gpu.TINY
    assert gpu.parse_args(["--tiny", "--prompts", "3"]).prompts == 3  # explicit values win


@pytest.mark.parametrize("argv", [["--server-flags", "--enable-torch-compile"],
                                  ["--server-flags=--enable-torch-compile"]])
def test_server_flags_take_a_lone_flag(argv):
    a = gpu.parse_args(["--tiny", *argv, "--prompts", "3"])
    assert (a.server_flags, a.prompts) == ("--enable-torch-compile", 3)
    two = gpu.parse_args(["--server-flags", "--attention-backend triton --cuda-graph-max-bs 256"])
    assert two.server_flags.split() == ["--attention-backend", "triton", "--cuda-graph-max-bs", "256"]


def test_llama_3_1_8b_shape_has_its_parameter_count_and_kv_size():
    c = gpu.param_counts(gpu.LLAMA_3_1_8B)
    assert c["embedding"] == c["lm_head"] == 128256 * 4096
    assert c["layers"] == 32 * (4096 * 4096 * 2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096)
    assert sum(c.values()) == 8_030_261_248  # Llama 3.1 8B's parameter count
    # 32 layers x 8 KV heads x 128 dims x (K and V) x 2 bytes
    assert gpu.kv_bytes_per_token(gpu.LLAMA_3_1_8B, 2) == 131072


def test_roofline_reads_weights_once_and_each_sequence_kv():
    cfg = gpu.LLAMA_3_1_8B
    w = gpu.weight_bytes_per_step(cfg, 2)
    c = gpu.param_counts(cfg)
    assert w == 2 * (c["layers"] + c["norm"] + c["lm_head"])  # the embedding is only gathered
    r = gpu.roofline(cfg, 2, batch=256, mean_context=576, bandwidth=4e12)
    assert r["kv_bytes"] == 256 * 576 * 131072
    assert math.isclose(r["step_s"], (w + r["kv_bytes"]) / 4e12)
    assert math.isclose(r["decode_tokens_per_s"], 256 / r["step_s"])
    tied = dict(cfg, tie_word_embeddings=True)  # a tied head still reads the table once
    assert gpu.weight_bytes_per_step(tied, 2) == w


def test_streamed_updates_become_per_token_gaps_and_percentiles():
    # first token at 1.0; an update carrying two tokens 0.2 s later is two gaps of 0.1
    assert gpu.gaps([(1.0, 1), (1.1, 2), (1.3, 4), (1.3, 4)]) == pytest.approx([0.1, 0.1, 0.1])
    g = gpu.gaps([(1.0, 1), (1.5, 2), (2.5, 4)])
    assert g == [0.5, 0.5, 0.5]
    p = gpu.percentiles([float(i) for i in range(100)])
    assert (p["p50"], p["p90"], p["p99"]) == (50.0, 90.0, 99.0)
    assert math.isnan(gpu.percentiles([])["p50"])
