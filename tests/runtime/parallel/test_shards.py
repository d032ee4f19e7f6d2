"""Each rank builds and loads only its shard: TP slices of every matrix (KV heads replicated when
there are fewer than ranks), its pipeline stage's layers, padded vocab ranges. No process group is
needed to load, so this runs in one process with the group description set by hand. And how a
pipeline step is cut into micro-batches."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from radix_runtime.core.config import EngineConfig
from radix_runtime.core.forward_batch import SeqInput
from radix_runtime.executor.group_runner import micro_batches
from radix_runtime.executor.shard import load_shard
from radix_runtime.hf_files import model_config
from radix_runtime.models.loader import load_model
from radix_runtime.parallel import group as groups


@pytest.fixture(scope="module")
def ckpt(tiny_models):
    d = tiny_models.get("qwen2", seed=3, num_layers=3, vocab_size=700)
    return d, load_file(f"{d}/model.safetensors")


@pytest.fixture
def as_rank():
    """Load a checkpoint as rank `rank` of a tp x pp group would."""
    def load(d, tp, pp, rank):
        groups.set_current(groups.Group(tp, pp, rank))
        return load_model(str(d), model_config(str(d)), torch.float32, torch.device("cpu"))
    yield load
    groups.set_current(groups.Group())


@pytest.mark.parametrize("tp,rank", [(2, 0), (2, 1), (4, 3)])
def test_tp_rank_holds_its_heads_and_columns(ckpt, as_rank, tp, rank):
    d, w = ckpt
    m = as_rank(d, tp, 1, rank)
    attn = m.model.layers[1].self_attn
    hd = attn.d
    q, kvh = 4 // tp, max(1, 2 // tp)
    kv0 = rank * 2 // tp  # first KV head of this rank (replicated when tp > 2)
    qkv = attn.qkv_proj.weight
    assert qkv.shape[0] == (q + 2 * kvh) * hd and (attn.h, attn.kvh) == (q, kvh)
    ref = "model.layers.1.self_attn."
    assert torch.equal(qkv[:q * hd], w[ref + "q_proj.weight"][rank * q * hd:(rank + 1) * q * hd])
    assert torch.equal(qkv[q * hd:(q + kvh) * hd], w[ref + "k_proj.weight"][kv0 * hd:(kv0 + kvh) * hd])
    assert torch.equal(attn.qkv_proj.bias[-kvh * hd:], w[ref + "v_proj.bias"][kv0 * hd:(kv0 + kvh) * hd])
    cols = attn.o_proj.weight.shape[1]
    assert torch.equal(attn.o_proj.weight, w[ref + "o_proj.weight"][:, rank * cols:(rank + 1) * cols])
    inter = w["model.layers.1.mlp.up_proj.weight"].shape[0] // tp
    up = m.model.layers[1].mlp.gate_up_proj.weight[inter:]
    assert torch.equal(up, w["model.layers.1.mlp.up_proj.weight"][rank * inter:(rank + 1) * inter])
    emb, vocab = m.model.embed_tokens.weight, w["model.embed_tokens.weight"].shape[0]
    per = -(-vocab // tp)
    mine = w["model.embed_tokens.weight"][rank * per:(rank + 1) * per]
    assert emb.shape[0] == per and torch.equal(emb[:len(mine)], mine) and not emb[len(mine):].any()


def test_pp_stage_holds_only_its_layers_and_ends(ckpt, as_rank):
    d, w = ckpt
    first, last = as_rank(d, 1, 2, 0), as_rank(d, 1, 2, 1)
    assert (first.model.start, first.model.end, last.model.start, last.model.end) == (0, 2, 2, 3)
    assert isinstance(first.model.layers[2], nn.Identity) and isinstance(last.model.layers[0], nn.Identity)
    assert first.model.norm is None and first.lm_head is None and last.model.embed_tokens is None
    # tied embeddings: the last stage loads the embedding matrix as its LM head
    assert torch.equal(last.lm_head.weight, w["model.embed_tokens.weight"])
    assert [a.layer for a in last.attention_layers()] == [0]  # KV pool index within the stage
    n_params = sum(p.numel() for p in first.parameters()) + sum(p.numel() for p in last.parameters())
    assert n_params == sum(t.numel() for t in w.values()) + w["model.embed_tokens.weight"].numel()


def test_indivisible_shapes_are_refused(ckpt, as_rank):
    with pytest.raises(ValueError, match="not divisible by the tensor-parallel size 3"):
        as_rank(ckpt[0], 3, 1, 0)


@pytest.mark.parametrize("lens,n", [([1] * 9, 2), ([300, 1, 1, 1], 2), ([1, 1, 40], 2), ([7], 4),
                                    ([5, 9, 2, 2, 8, 1, 1], 3), ([1] * 5, 1)])
def test_micro_batches_are_contiguous_balanced_runs(lens, n):
    seqs = [SeqInput([0] * k, 0, torch.zeros(k, dtype=torch.long)) for k in lens]
    runs = micro_batches(seqs, n)
    assert [i for run in runs for i in run] == list(range(len(lens)))
    assert all(runs) and len(runs) <= n
    assert len(runs) == min(n, len(lens)) or max(lens) > sum(lens) / n  # splits unless one dominates


class _Alone(groups.Group):
    """A rank description without peers: the pool size needs no agreement."""

    def min_across(self, value: int) -> int:
        return value


@pytest.mark.parametrize("tp,pp,rank,layers,kv_heads", [(2, 1, 1, 3, 1), (4, 1, 2, 3, 1), (1, 2, 1, 1, 2),
                                                        (2, 2, 3, 1, 1)])
def test_kv_pool_holds_only_this_ranks_layers_and_heads(ckpt, tp, pp, rank, layers, kv_heads):
    groups.set_current(_Alone(tp, pp, rank))
    try:
        cfg = EngineConfig(model_path=str(ckpt[0]), tp_size=tp, pp_size=pp, max_total_tokens=64)
        _, _, _, pool = load_shard(cfg, torch.device("cpu"))
    finally:
        groups.set_current(groups.Group())
    assert len(pool.k) == len(pool.v) == layers
    assert pool.k[0].shape == (65, kv_heads, 16)
