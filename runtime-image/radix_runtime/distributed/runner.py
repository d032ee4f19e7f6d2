"""One step across the group: rank 0 decides, every rank computes its shard.

Rank 0's scheduler talks to a `LeaderRunner`, which has ModelRunner's interface: each call is
broadcast as an op (the step's batch description, or which rows to score) so that every rank runs
the same forward on its shard (`StageRunner`): receive the previous stage's hidden states, run its
layers, send them on. The last stage's first TP rank ships what the scheduler needs (last-token
hidden states, logits) to rank 0, which alone samples: one RNG, one decision, as in one process.
Followers sit in `follow()` until the leader says stop.
"""
from __future__ import annotations

import logging
import threading

import torch

from ..engine.model_runner import ModelRunner, SeqInput
from .group import Group

FORWARD, LOGITS, STOP = "forward", "logits", "stop"
log = logging.getLogger("radix_runtime.runner")


class StageRunner:
    """This rank's part of an op."""

    def __init__(self, runner: ModelRunner, g: Group):
        self.runner, self.g = runner, g
        self.model = runner.model
        self.hidden_size = self.model.args.hidden_size
        self.vocab_size = self.model.args.vocab_size
        self._last: torch.Tensor | None = None  # last stage: the last forward's last-token states
        # the ranks whose results rank 0 receives instead of computing them itself
        self.ships = g.pp_size > 1 and g.is_last_stage and g.tp_rank == 0

    @torch.inference_mode()
    def forward(self, seqs: list[SeqInput]):
        g = self.g
        fb, order = self.runner._batch(seqs)
        x = None
        if not g.is_first_stage:
            x = g.recv((fb.input_ids.numel(), self.hidden_size), self.runner.pool.k[0].dtype,
                       g.rank - g.tp_size)
        h = self.model(fb, x)
        if not g.is_last_stage:
            g.send(h, g.rank + g.tp_size)
            return None
        last, full = self.runner.outputs(seqs, order, h)
        self._last = last
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
    A failed collective means the group is broken: `on_error` reports it (health.py exits)."""

    def __init__(self, stage: StageRunner, on_error):
        self.stage, self.g, self.on_error = stage, stage.g, on_error
        self.pool, self.device = stage.runner.pool, stage.runner.device
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
        last = g.recv((len(seqs), self.stage.hidden_size), self.pool.k[0].dtype, src)
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
