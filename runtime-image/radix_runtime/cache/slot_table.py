"""Every running request's KV slot list as one row of a [rows, width] int64 table (SGLang's
req_to_token): a decode step appends all of its new slots with one index_put instead of one
torch.cat per request, and a request's slot list is a view of its row.

Rows and width grow by doubling (a copy); views taken before a growth keep the old values, so
they are for reading within a step only. A row is owned by one request from its first slot until
it gives its slots up (scheduler: finish, abort, retraction).
"""
from __future__ import annotations

from array import array

import torch


class SlotTable:
    def __init__(self, rows: int = 8, width: int = 256):
        self._free = list(range(rows - 1, -1, -1))  # popped from the end: low rows first
        self._set(torch.zeros(rows, width, dtype=torch.int64))

    def _set(self, data: torch.Tensor) -> None:
        if data.is_inference():  # grown inside a step; an abort writes rows outside inference mode
            with torch.inference_mode(False):
                data = data.clone()
        self.data = data
        # each row as a 1-D view, made once per growth: slicing one is ~2x cheaper than data[i, :n]
        self.row = list(data.unbind(0))

    @property
    def rows_in_use(self) -> int:
        return self.data.shape[0] - len(self._free)

    def acquire(self) -> int:
        if not self._free:
            n = self.data.shape[0]
            self._set(torch.cat((self.data, torch.zeros_like(self.data))))
            self._free = list(range(2 * n - 1, n - 1, -1))
        return self._free.pop()

    def release(self, row: int) -> None:
        self._free.append(row)

    def ensure_width(self, n: int) -> None:
        w = self.data.shape[1]
        if n > w:
            while w < n:
                w *= 2
            grown = torch.zeros(self.data.shape[0], w, dtype=torch.int64)
            grown[:, :self.data.shape[1]] = self.data
            self._set(grown)

    def write(self, row: int, slots: torch.Tensor) -> None:
        """row[:len(slots)] = slots."""
        self.ensure_width(slots.numel())
        self.data[row, :slots.numel()] = slots

    def append(self, rows: list[int], pos: list[int], new: torch.Tensor) -> None:
        """row[p] = new[j] for each (row, p) = (rows[j], pos[j]): one slot more for each row."""
        self.ensure_width(max(pos) + 1)
        w = self.data.shape[1]
        # through an int64 array: ~4x faster than torch.tensor(list) for a batch of ints
        flat = torch.frombuffer(array("q", [r * w + p for r, p in zip(rows, pos)]), dtype=torch.int64)
        self.data.put_(flat, new)
