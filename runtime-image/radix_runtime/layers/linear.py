"""Linear layers in the shapes tensor parallelism needs (issue 7 adds the sharding).

Each layer owns a `weight_loader(param, loaded, shard_id)` (the loader looks it up on the module
owning the parameter) that copies one checkpoint tensor into
its slice of the (possibly fused) parameter. With tp_size > 1 a column-parallel layer would keep
rows [rank*n/tp, (rank+1)*n/tp) of each shard, a row-parallel one the matching input columns and an
all-reduce after the matmul; today tp_size is 1 and every layer holds the whole matrix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearBase(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False)
        else:
            self.register_parameter("bias", None)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        assert shard_id is None and param.shape == loaded.shape, (param.shape, loaded.shape)
        param.data.copy_(loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class ColumnParallelLinear(LinearBase):
    """Output features split across TP ranks (no communication in forward)."""


class RowParallelLinear(LinearBase):
    """Input features split across TP ranks; forward will all-reduce its partial sums."""


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel matrices fused along the output dim (gate_proj + up_proj)."""

    def __init__(self, in_features: int, out_sizes: list[int], bias: bool = False):
        self.out_sizes = out_sizes
        super().__init__(in_features, sum(out_sizes), bias)

    def weight_loader(self, param, loaded, shard_id=None):
        start = sum(self.out_sizes[:shard_id])
        param.data.narrow(0, start, self.out_sizes[shard_id]).copy_(loaded)


class QKVParallelLinear(ColumnParallelLinear):
    """q_proj, k_proj and v_proj fused so attention runs one matmul; shard ids 'q', 'k', 'v'."""

    def __init__(self, hidden: int, head_dim: int, num_heads: int, num_kv_heads: int, bias: bool):
        self.sizes = {"q": num_heads * head_dim, "k": num_kv_heads * head_dim, "v": num_kv_heads * head_dim}
        super().__init__(hidden, sum(self.sizes.values()), bias)

    def weight_loader(self, param, loaded, shard_id=None):
        start = {"q": 0, "k": self.sizes["q"], "v": self.sizes["q"] + self.sizes["k"]}[shard_id]
        param.data.narrow(0, start, self.sizes[shard_id]).copy_(loaded)


class VocabParallelEmbedding(nn.Module):
    """Token embedding; with TP each rank will hold a vocab range and mask/all-reduce lookups."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, dim), requires_grad=False)

    def weight_loader(self, param, loaded, shard_id=None):
        param.data.copy_(loaded)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class ParallelLMHead(VocabParallelEmbedding):
    """Output projection; with TP each rank computes its vocab slice and logits are gathered."""

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight)
