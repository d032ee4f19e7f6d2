"""Overlap scheduling: a decode batch's forward, LM head and argmax run on a model thread while
the scheduler thread commits the previous batch's tokens (stop checks, detokenization, outputs)
and plans the next batch.

The next batch is planned before the current one's tokens are known: its rows' input tokens are
filled in by the model thread from the previous job's argmax when it starts the job (jobs run one
at a time, in order), so the scheduler never waits for them. A request that stops (a stop token or
string) at batch k was already planned into batch k+1: that row is spare work, skipped when k+1 is
committed, and its KV slot was freed with the request. Requests that will finish by length are
left out of the next batch, since that is known ahead.

Only rows whose next token depends on their logits and parameters alone (no bias, penalties,
grammar, logprobs, min_new_tokens masking stop tokens) are pipelined; any other batch runs
synchronously once the pipeline has drained. Greedy outputs are the same with overlap on or off,
and so are seeded samples (each row draws from its own generator); unseeded rows share the
scheduler's generator, and spare rows draw from it too, so their samples differ (in value, not
in distribution).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from ..core.forward_batch import SeqInput
from .sampling import SampleRow, argmax_rows, sample


@dataclass
class Job:
    reqs: list  # scheduler.request.Req, one per row
    seqs: list[SeqInput]
    prev: "Job | None" = None  # the job whose argmax gives this job's input tokens
    src: list[int] | None = None  # row j's token: prev.next_ids[src[j]]
    t_plan: float = 0.0  # when the step that planned it began
    rows: list[SampleRow] | None = None  # None: every row is greedy (one argmax)
    generator: torch.Generator | None = None  # for rows without a seed
    done: threading.Event = field(default_factory=threading.Event)
    next_ids: list[int] | None = None
    model_s: float = 0.0  # forward + LM head, less the runner's host-side work
    error: BaseException | None = None

    def wait(self) -> list[int]:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.next_ids


class ModelThread:
    """Runs Jobs in submission order on one thread (the runner is used by nothing else while a job
    is in flight: the scheduler drains before any synchronous step)."""

    def __init__(self, runner, sync_timing: bool = False):
        self.runner, self.sync_timing = runner, sync_timing
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="radix-model", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._q.put(job)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            try:
                with torch.inference_mode():
                    self._run(job)
            except BaseException as e:  # handed to the scheduler thread by Job.wait
                job.error = e
            job.done.set()

    def _run(self, job: Job) -> None:
        if job.prev is not None:  # ran before this one: its tokens are known
            if job.prev.error is not None:
                raise RuntimeError("the forward this batch's tokens come from failed")
            prev, job.prev = job.prev.next_ids, None  # (no chain of every job ever run)
            for s, j in zip(job.seqs, job.src):
                s.token_ids = [prev[j]]
        r = self.runner
        t0, host0 = time.perf_counter(), getattr(r, "host_s", 0.0)
        last_hidden, _ = r.forward(job.seqs)
        logits = r.logits(last_hidden, list(range(len(job.seqs))))
        if self.sync_timing and torch.cuda.is_available():
            torch.cuda.synchronize()
        job.model_s = time.perf_counter() - t0 - (getattr(r, "host_s", 0.0) - host0)
        if job.rows is None:
            job.next_ids = argmax_rows(logits).tolist()
        else:
            job.next_ids = sample(logits.float(), job.rows, job.generator).tolist()
