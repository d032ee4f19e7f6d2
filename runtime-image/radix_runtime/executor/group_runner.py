"""One step across the group: rank 0 decides, every rank computes its shard.

Rank 0's scheduler talks to a `LeaderRunner`, which has ModelRunner's interface: each call is
broadcast as an op (the step's batch description, or which rows to score) so that every rank runs
the same forward on its shard (`StageRunner`): receive the previous stage's hidden states, run its
layers, send them on, in pp micro-batches so the stages overlap. The last stage's first TP rank
ships what the scheduler needs (last-token hidden states, logits) to rank 0, which alone samples:
one RNG, one decision, as in one process.
Followers sit in `follow()` until the leader says stop.
"""
from __future__ import annotations

import logging
import threading

import torch

from ..core.forward_batch import SeqInput
from ..parallel.group import Group
from .model_runner import ModelRunner

FORWARD, LOGITS, STOP = "forward", "logits", "stop"
log = logging.getLogger("radix_runtime.group_runner")


def micro_batches(seqs: list[SeqInput], n: int) -> list[list[int]]:
    """Up to n contiguous runs of seqs with about equal token counts (one run without PP)."""
    total = sum(len(s.token_ids) for s in seqs)
    out: list[list[int]] = [[]]
    done = 0
    for i, s in enumerate(seqs):
        # cut where this sequence's middle passes the current run's share
        if out[-1] and len(out) < n and done + len(s.token_ids) / 2 >= total * len(out) / n:
            out.append([])
        out[-1].append(i)
        done += len(s.token_ids)
    return out


class StageRunner:
    """This rank's part of an op."""

    def __init__(self, runner: ModelRunner, g: Group):
        self.runner, self.g = runner, g
        self.model = runner.model
        self.hidden_size = self.model.args.hidden_size
        self.vocab_size = self.model.args.vocab_size
        self.dtype = runner.pool.k[0].dtype
        self._last: torch.Tensor | None = None  # last stage: the last forward's last-token states
        # the ranks whose results rank 0 receives instead of computing them itself
        self.ships = g.pp_size > 1 and g.is_last_stage and g.tp_rank == 0

    @torch.inference_mode()
    def forward(self, seqs: list[SeqInput]):
        """Micro-batches under PP: while stage s+1 runs one, stage s already runs the next."""
        g = self.g
        last = full = None
        sends = []
        if g.is_last_stage:
            last, full = [None] * len(seqs), {}
        for idx in micro_batches(seqs, g.pp_size):
            part = [seqs[i] for i in idx]
            fb, order = self.runner.batch(part)
            x = None
            if not g.is_first_stage:
                x = g.recv((fb.input_ids.numel(), self.hidden_size), self.dtype, g.rank - g.tp_size)
            h = self.model(fb, x)
            if not g.is_last_stage:
                sends.append((g.isend(h, g.rank + g.tp_size), h))
                continue
            part_last, part_full = self.runner.outputs(part, order, h)
            for j, i in enumerate(idx):
                last[i] = part_last[j]
                if j in part_full:
                    full[i] = part_full[j]
        for work, _ in sends:
            work.wait()
        if not g.is_last_stage:
            return None
        self._last = last = torch.stack(last)
        if self.ships:
            g.send(last, 0)
            if full:
                g.send(torch.cat([full[i] for i in sorted(full)]), 0)
        return last, full

    @torch.inference_mode()
    def logits(self, rows: list[int]):
        if not self.g.is_last_stage:
            return None
        out = self.model.logits(self._last[rows])
        if self.ships:
            self.g.send(out, 0)
        return out


class LeaderRunner:
    """Rank 0's ModelRunner: broadcast the op, run its own shard, collect the last stage's result.
    A failed collective means the group is broken: `on_error` reports it (distributed/heartbeat.py
    then exits)."""

    def __init__(self, stage: StageRunner, on_error):
        self.stage, self.g, self.on_error = stage, stage.g, on_error
        self._lock = threading.Lock()  # one op at a time, in one order on every rank

    def _call(self, op, compute):
        with self._lock:
            try:
                self.g.broadcast_op(op)
                return compute()
            except Exception as e:
                self.on_error(f"collective failed: {type(e).__name__}: {e}")
                raise

    def forward(self, seqs: list[SeqInput]):
        return self._call((FORWARD, seqs), lambda: self._forward(seqs))

    def _forward(self, seqs):
        out = self.stage.forward(seqs)
        if self.g.is_last_stage:
            return out
        g, src = self.g, self.g.last_stage_head
        last = g.recv((len(seqs), self.stage.hidden_size), self.stage.dtype, src)
        want = [i for i, s in enumerate(seqs) if s.all_logits]
        full = {}
        if want:
            rows = g.recv((sum(len(seqs[i].token_ids) for i in want), self.stage.vocab_size),
                          torch.float32, src)
            for i, part in zip(want, rows.split([len(seqs[i].token_ids) for i in want])):
                full[i] = part
        return last, full

    def logits(self, last_hidden: torch.Tensor, rows: list[int]) -> torch.Tensor:
        def compute():
            out = self.stage.logits(rows)
            if out is None:
                out = self.g.recv((len(rows), self.stage.vocab_size), torch.float32, self.g.last_stage_head)
            return out
        return self._call((LOGITS, rows), compute)

    def close(self) -> None:
        """Release the followers (they exit 0)."""
        with self._lock:
            try:
                self.g.broadcast_op((STOP, None))
            except Exception as e:  # a follower already gone: it cannot be told anything
                log.warning("could not tell every rank to stop: %s", e)


def follow(stage: StageRunner) -> None:
    """A follower's loop: run the leader's ops until STOP (returns) or a collective fails (raises)."""
    while True:
        kind, arg = stage.g.broadcast_op()
        if kind == FORWARD:
            stage.forward(arg)
        elif kind == LOGITS:
            stage.logits(arg)
        else:
            return
