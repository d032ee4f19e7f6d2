"""`RadixEngine`, the implementation of core/protocol.py's Engine: model + KV pool + scheduler
driven by one loop thread.

torch blocks, so the scheduler runs in its own thread; asyncio callers hand requests over through
an inbox and receive `EngineOutput`s on per-request asyncio queues via call_soon_threadsafe.
Constructing one loads the model (the server does that in a worker thread). In a process group
(rank 0), `wrap_runner` puts the group's LeaderRunner around this rank's ModelRunner.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from typing import Callable

import torch

from ..core.config import EngineConfig
from ..core.errors import InvalidRequestError, QueueFullError
from ..core.protocol import EngineStats
from ..core.request import EngineOutput, EngineRequest
from ..core.validation import check_new_tokens, check_prompt
from ..executor.decode_graph import CompiledDecode
from ..executor.model_runner import ModelRunner
from ..core.spec_config import NGRAM, SpecSettings, resolve_speculative
from ..executor.shard import choose_device, load_draft, load_shard
from ..grammar.backend import GrammarBackend
from ..models.loader import eos_token_ids
from ..parallel.group import current
from ..scheduler.request import Req
from ..scheduler.scheduler import Scheduler
from ..scheduler.speculative import DraftModelProposer, NgramProposer
from ..tokenizer import Tokenizer

log = logging.getLogger("radix_runtime.engine")
# overlap scheduling (scheduler/overlap.py) is opt-in until it has been measured on a GPU: the
# flag, or this variable =1 for benches that build their EngineConfig themselves
OVERLAP_ENV = "RADIX_OVERLAP_SCHEDULE"
_LOG_EVERY_S = 10.0  # a throughput line this often while busy


class _Stream:
    """One request's updates, on its caller's event loop: the latest not yet taken (updates are
    cumulative, so a newer one replaces it) and the caller's waiter. Lighter than an
    asyncio.Queue, which matters at one wake-up per running request per step."""

    __slots__ = ("loop", "latest", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.latest, self.waiter = loop, None, None

    async def next(self) -> EngineOutput:
        if self.latest is None:
            self.waiter = self.loop.create_future()
            await self.waiter
        out, self.latest = self.latest, None
        return out


def _put_all(items) -> None:
    for stream, out in items:
        stream.latest = out
        w = stream.waiter
        if w is not None and not w.done():
            w.set_result(None)


def _compile_progress(i: int, n: int, bs: int, seconds: float) -> None:
    print(f"[radix_runtime] compiled the decode graphs for batch size {bs} ({i}/{n}) in {seconds:.1f} s",
          file=sys.stderr, flush=True)


class RadixEngine:
    is_generation = True

    def __init__(self, config: EngineConfig, wrap_runner: Callable[[ModelRunner], object] | None = None):
        self.config = config
        self.device = choose_device(config.device)
        if config.page_size != 1:
            raise ValueError("only --page-size 1 is supported")
        self.spec = resolve_speculative(config)  # flag errors before the model loads
        self.tokenizer = Tokenizer(config.tokenizer_path or config.model_path)
        torch.manual_seed(config.random_seed)
        model, hf_config, self.dtype, self.pool = load_shard(
            config, self.device, self.spec.draft_model_path if self.spec else None)
        self.context_length = config.context_length or model.args.max_position_embeddings
        self.eos_token_ids = eos_token_ids(config.model_path, hf_config)
        if not self.eos_token_ids and self.tokenizer.eos_token_id is not None:
            self.eos_token_ids = {self.tokenizer.eos_token_id}
        self.vocab_size = model.args.vocab_size
        self.takes_images = getattr(model, "is_vision", False)
        print(f"[radix_runtime] KV pool: {self.pool.size} tokens on {self.device} ({self.dtype})",
              file=sys.stderr, flush=True)
        self.runner = ModelRunner(model, self.pool, self.device, config.attention_backend, config=config)
        if isinstance(self.runner.graphs, CompiledDecode):  # --enable-torch-compile: all buckets now
            with torch.inference_mode():
                self.runner.graphs.compile_all(_compile_progress)
        if wrap_runner is not None:  # rank 0 of a group: every step goes to all ranks
            self.runner = wrap_runner(self.runner)
        self.group = current()
        if config.grammar_backend != "xgrammar":
            raise ValueError(f"--grammar-backend {config.grammar_backend!r}: only xgrammar is supported")
        self.grammar = GrammarBackend(config.tokenizer_path or config.model_path, self.vocab_size,
                                      self.eos_token_ids)
        # one process only: a group's LeaderRunner keeps every rank's ops in the loop thread's order
        overlap = (config.enable_overlap_schedule or os.environ.get(OVERLAP_ENV) == "1") and wrap_runner is None
        self.scheduler = Scheduler(self.runner, self.pool, self.tokenizer, self.eos_token_ids,
                                   config, self.context_length, self.grammar,
                                   spec=self._proposer(self.spec), overlap=overlap)
        self._lock = threading.Lock()  # held around each scheduler step and admin call
        self._cv = threading.Condition()
        self._inbox: list[Req] = []
        self._aborts: list[str] = []
        self._streams: dict[str, _Stream] = {}
        self._stop = False
        self.last_step_time = self._last_log = time.monotonic()
        self._last_gen = 0
        self._thread = threading.Thread(target=self._loop, name="radix-engine", daemon=True)
        self._thread.start()

    def _proposer(self, spec: SpecSettings | None):
        """The speculative-decoding proposer (scheduler/speculative.py) the flags ask for."""
        if spec is None:
            return None
        if spec.algorithm == NGRAM:
            return NgramProposer(spec.num_drafts, spec.ngram_min_window, spec.ngram_max_window)
        draft, pool = load_draft(spec.draft_model_path, self.config, self.device, self.pool.size,
                                 self.context_length, self.vocab_size)
        runner = ModelRunner(draft, pool, self.device, self.config.attention_backend)
        return DraftModelProposer(runner, spec.num_drafts)

    # -- the loop thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not (self._stop or self._inbox or self._aborts or self.scheduler.has_work()):
                    self._cv.wait(timeout=0.5)
                    self.last_step_time = time.monotonic()
                inbox, self._inbox = self._inbox, []
                aborts, self._aborts = self._aborts, []
                stopping = self._stop  # read once: a stop arriving mid-step is seen next round
            outputs: list[EngineOutput] = []
            with self._lock:
                for r in inbox:
                    self.scheduler.add(r)
                for rid in aborts:
                    out = self.scheduler.abort(rid)
                    if out is not None:
                        outputs.append(out)
                if stopping:
                    self.scheduler.close()  # a forward in flight finishes first
                    outputs += self._abort_all("server shutting down")
                else:
                    try:
                        outputs += self.scheduler.step()
                    except Exception as e:  # a failing step must not kill the server
                        traceback.print_exc()
                        outputs += self._abort_all(f"engine error: {type(e).__name__}: {e}")
            self.last_step_time = time.monotonic()
            self._deliver(outputs)
            self._maybe_log()
            if stopping:
                return

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log < _LOG_EVERY_S:
            return
        st = self.stats()
        gen = st.generation_tokens_total - self._last_gen
        if gen or st.num_running_reqs or st.num_waiting_reqs:
            hit = st.cached_tokens_total / max(st.prompt_tokens_total, 1)
            log.info("running %d, waiting %d, gen %.1f tok/s, KV used %.1f%% (cache %.1f%%), "
                     "hit rate %.1f%%, retractions %d", st.num_running_reqs, st.num_waiting_reqs,
                     gen / (now - self._last_log), 100 * st.token_usage, 100 * st.cache_usage,
                     100 * hit, st.num_retractions_total)
        self._last_log, self._last_gen = now, st.generation_tokens_total

    def _abort_all(self, message: str) -> list[EngineOutput]:
        outputs = []
        for r in list(self.scheduler.running) + list(self.scheduler.waiting):
            out = self.scheduler.abort(r.rid)
            out.finish_reason = {"type": "abort", "message": message}
            outputs.append(out)
        return outputs

    def _deliver(self, outputs: list[EngineOutput]) -> None:
        """One wake-up per event loop per step, not one per output."""
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for out in outputs:
            stream = self._streams.get(out.rid)
            if stream is not None:
                by_loop.setdefault(stream.loop, []).append((stream, out))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # the caller's loop is closed
                pass

    # -- the Engine protocol (core/protocol.py) -------------------------------------------------
    def _validate(self, req: EngineRequest) -> None:
        n, m = len(req.input_ids), req.sampling.max_new_tokens
        check_prompt(req.input_ids, self.context_length, self.vocab_size)
        if req.images and not self.takes_images:
            raise InvalidRequestError("image_data", "this model takes no image input")
        if not req.embedding:
            check_new_tokens(n, m, self.context_length)
        if n + (0 if req.embedding else m) > self.pool.size:
            raise InvalidRequestError("max_new_tokens", f"the request needs more KV than the pool holds ({self.pool.size} tokens)")
        if req.rid in self._streams:
            raise InvalidRequestError("rid", f"request id {req.rid!r} is already running")

    async def generate(self, req: EngineRequest):
        self._validate(req)
        if self.num_waiting() >= self.config.max_queued_requests:
            raise QueueFullError(f"{self.config.max_queued_requests} requests are waiting already")
        if self._stop:
            raise QueueFullError("the engine is shutting down")
        sched_req = Req.from_engine(req)
        if req.sampling.grammar is not None:  # compiled off the loop thread, cached by spec
            spec = req.sampling.grammar
            sched_req.grammar = self.grammar.matcher(await self.grammar.compile(spec), spec)
        stream = self._streams[req.rid] = _Stream(asyncio.get_running_loop())
        with self._cv:
            self._inbox.append(sched_req)
            self._cv.notify()
        finished = False
        try:
            while True:
                out = await stream.next()  # a slow reader gets the latest (cumulative) update only
                finished = out.finished
                yield out
                if finished:
                    return
        finally:
            self._streams.pop(req.rid, None)
            if not finished:
                self.abort(req.rid)

    def abort(self, rid: str) -> bool:
        known = rid in self._streams
        with self._cv:
            self._aborts.append(rid)
            self._cv.notify()
        return known

    def num_waiting(self) -> int:
        return len(self._inbox) + len(self.scheduler.waiting)

    def flush_cache(self) -> bool:
        with self._lock:
            if self._inbox:
                return False
            return self.scheduler.flush_cache()

    def stats(self) -> EngineStats:
        s = self.scheduler
        token_usage, cache_usage = s.kv_usage()
        return EngineStats(
            num_running_reqs=len(s.running), num_waiting_reqs=self.num_waiting(),
            token_usage=token_usage, cache_usage=cache_usage, total_kv_tokens=self.pool.size,
            prompt_tokens_total=s.prompt_tokens_total, cached_tokens_total=s.cached_tokens_total,
            computed_prefill_tokens_total=s.computed_prefill_tokens_total,
            generation_tokens_total=s.generation_tokens_total,
            num_retractions_total=s.num_retractions_total, last_step_time=self.last_step_time,
            broken=self._broken(), evictable_kv_tokens=s.tree.evictable_size,
            speculative_algorithm=self.spec.algorithm if self.spec else None,
            forward_passes_total=s.forward_passes_total, spec_drafts_total=s.spec_drafts_total,
            spec_draft_tokens_total=s.spec_draft_tokens_total,
            spec_accepted_tokens_total=s.spec_accepted_tokens_total,
        )

    def _broken(self) -> str | None:
        h = self.group.health
        return f"the process group is broken: {h.reason}" if h is not None and h.reason else None

    def check_integrity(self) -> None:
        with self._lock:
            self.scheduler.check_integrity()

    async def shutdown(self) -> None:
        """Stop the loop; requests still queued or running end with an abort."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        await asyncio.to_thread(self._thread.join)
        if self.group.health is not None:
            self.group.health.set_state("stopping")  # the followers leave now; that is no failure
        await asyncio.to_thread(self.runner.close)
