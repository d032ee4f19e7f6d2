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
    """Free slots kept as a CPU int64 tensor; alloc takes from the front, free appends. Freed
    slots wait in a list and are joined in one cat when alloc reaches them (a free per finished
    request would otherwise copy the whole free list each time)."""

    def __init__(self, size: int):
        self._free = torch.arange(1, size + 1, dtype=torch.int64)
        self._freed: list[torch.Tensor] = []
        self._n_freed = 0

    @property
    def free_slots(self) -> torch.Tensor:
        if self._freed:
            self._free = torch.cat((self._free, *self._freed))
            self._freed, self._n_freed = [], 0
        return self._free

    def available(self) -> int:
        return int(self._free.numel()) + self._n_freed

    def alloc(self, n: int) -> torch.Tensor | None:
        if n > self._free.numel():
            if n > self.available():
                return None
            self.free_slots  # join the freed ones behind the front
        out, self._free = self._free[:n], self._free[n:]
        return out

    def free(self, slots: torch.Tensor) -> None:
        if slots.numel():
            self._freed.append(slots.to(torch.int64).cpu().clone())
            self._n_freed += slots.numel()
