"""The paged KV pool: per-layer K and V buffers indexed by slot, and the free-slot allocator.

Page size is one token (SGLang's default), so a request's page table is simply its list of slots.
Slot 0 is never handed out: padded page tables point there and masks hide it.
"""
from __future__ import annotations

import torch


class KVPool:
    def __init__(self, size: int, num_layers: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        self.size = size  # usable slots (1..size)
        shape = (size + 1, num_kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.allocator = SlotAllocator(size)

    def write(self, layer: int, loc: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k[layer][loc] = k
        self.v[layer][loc] = v

    @staticmethod
    def bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * num_layers * num_kv_heads * head_dim * torch.tensor([], dtype=dtype).element_size()


class SlotAllocator:
    """Free slots kept as a CPU int64 tensor; alloc takes from the front, free appends."""

    def __init__(self, size: int):
        self.free_slots = torch.arange(1, size + 1, dtype=torch.int64)

    def available(self) -> int:
        return int(self.free_slots.numel())

    def alloc(self, n: int) -> torch.Tensor | None:
        if n > self.free_slots.numel():
            return None
        out, self.free_slots = self.free_slots[:n], self.free_slots[n:]
        return out

    def free(self, slots: torch.Tensor) -> None:
        if slots.numel():
            self.free_slots = torch.cat((self.free_slots, slots.to(torch.int64).cpu()))
