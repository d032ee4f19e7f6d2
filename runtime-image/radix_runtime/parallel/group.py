"""Which shard this process runs and the collectives between shards.

Ranks are laid out TP-major, `rank = pp_rank * tp + tp_rank`, so a TP group (the chatty one: two
all-reduces per layer) is a run of consecutive ranks and stays inside a pod whenever a pod holds a
multiple of tp ranks; PP stages talk once per step. Layers read `current()` when they are built, so
a single process (the default `Group()`) needs no torch.distributed at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist


def split_layers(num_layers: int, pp: int, stage: int) -> tuple[int, int]:
    """Contiguous [start, end) of one stage; the first stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    start = stage * base + min(stage, extra)
    return start, start + base + (stage < extra)


@dataclass
class Group:
    tp_size: int = 1
    pp_size: int = 1
    rank: int = 0
    tp_group: object = None  # torch ProcessGroup of this rank's TP peers
    ctrl_group: object = None  # gloo group for the leader's op broadcasts (CPU objects)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    health: object = None  # distributed.heartbeat.GroupHealth of a real group (set by the rank process)

    @property
    def world_size(self) -> int:
        return self.tp_size * self.pp_size

    @property
    def tp_rank(self) -> int:
        return self.rank % self.tp_size

    @property
    def pp_rank(self) -> int:
        return self.rank // self.tp_size

    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1

    @property
    def last_stage_head(self) -> int:
        """The rank that ships the last stage's results to rank 0."""
        return (self.pp_size - 1) * self.tp_size

    def layer_range(self, num_layers: int) -> tuple[int, int]:
        return split_layers(num_layers, self.pp_size, self.pp_rank)

    # -- collectives (no-ops for one rank) ---------------------------------------------------
    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp_size > 1:
            dist.all_reduce(x, group=self.tp_group)
        return x

    def all_gather_last(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the TP ranks' x along the last dim (vocab-parallel logits)."""
        if self.tp_size == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.tp_size)]
        dist.all_gather(parts, x.contiguous(), group=self.tp_group)
        return torch.cat(parts, dim=-1)

    def send(self, x: torch.Tensor, dst: int) -> None:
        dist.send(x.contiguous(), dst)

    def isend(self, x: torch.Tensor, dst: int):
        """Asynchronous: the caller keeps x alive until .wait()."""
        return dist.isend(x.contiguous(), dst)

    def recv(self, shape, dtype: torch.dtype, src: int) -> torch.Tensor:
        x = torch.empty(shape, dtype=dtype, device=self.device)
        dist.recv(x, src)
        return x

    def min_across(self, value: int) -> int:
        """The smallest value any rank holds (KV pool size: every rank must index the same slots)."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.ctrl_group)
        return int(t.item())

    def broadcast_op(self, op=None):
        """Rank 0 sends `op` to every rank; every rank returns it."""
        box = [op]
        dist.broadcast_object_list(box, src=0, group=self.ctrl_group)
        return box[0]


_CURRENT = Group()


def current() -> Group:
    return _CURRENT


def set_current(g: Group) -> None:
    global _CURRENT
    _CURRENT = g


def init(store, rank: int, tp: int, pp: int, device: torch.device, timeout: float, health) -> Group:
    """Join the process group through `store` (rank 0's rendezvous) and build the subgroups. Data
    collectives time out after `timeout` s (a hung peer); the op channel waits as long as the
    leader idles (liveness there is the heartbeat's job, see distributed/heartbeat.py)."""
    world = tp * pp
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout))
    tp_group = None
    for s in range(pp):  # every rank must create every subgroup, in the same order
        g = dist.new_group(list(range(s * tp, (s + 1) * tp)))
        if s == rank // tp:
            tp_group = g
    ctrl = dist.new_group(backend="gloo", timeout=timedelta(days=3650))
    group = Group(tp, pp, rank, tp_group, ctrl, device, health)
    set_current(group)
    return group
