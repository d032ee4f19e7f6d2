"""The concrete Engine (see protocol.py): model + KV pool + scheduler driven by one loop thread.

torch blocks, so the scheduler runs in its own thread; asyncio callers hand requests over through
an inbox and receive `EngineOutput`s on per-request asyncio queues via call_soon_threadsafe.
Build one with `await Engine.create(config)` (loads in a worker thread) or `Engine.from_config`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback

import torch

from ..cache.kv_pool import KVPool
from ..distributed.group import current
from ..distributed.runner import LeaderRunner, StageRunner
from ..scheduler.request import Req
from ..scheduler.scheduler import Scheduler
from ..tokenizer import Tokenizer
from .loader import eos_token_ids, load_model, read_json, resolve_dtype
from .model_runner import ModelRunner
from .protocol import (EngineConfig, EngineOutput, EngineRequest, EngineStats, InvalidRequestError,
                       QueueFullError)

log = logging.getLogger("radix_runtime.engine")
_CPU_KV_BYTES, _CPU_KV_TOKENS = 2 << 30, 65536  # default KV pool on CPU: whichever is smaller
_LOG_EVERY_S = 10.0  # a throughput line this often while busy


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _pool_size(cfg: EngineConfig, model, dtype, device, context_length: int) -> int:
    """KV slots this rank can hold (its layers and KV heads only); the group takes the minimum."""
    attn = model.attention_layers()
    per_token = KVPool.bytes_per_token(len(attn), attn[0].kvh, attn[0].d, dtype)
    if cfg.max_total_tokens:
        return cfg.max_total_tokens
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        frac = cfg.mem_fraction_static or 0.85
        budget = total * frac - (total - free)  # what the weights left of our share
        return max(int(budget / per_token), context_length)
    return max(min(_CPU_KV_BYTES // per_token, _CPU_KV_TOKENS), context_length)


def check_parallel(config: EngineConfig) -> None:
    g = current()
    if (config.tp_size, config.pp_size) != (g.tp_size, g.pp_size):
        raise ValueError(f"--tp-size {config.tp_size} --pp-size {config.pp_size} needs a process group "
                         "of that shape: start it with `python -m radix_runtime.launch_server`")


def load_shard(config: EngineConfig, device: torch.device):
    """This rank's part of the model and its KV pool -> (model, hf_config, dtype, pool)."""
    check_parallel(config)
    hf_config = read_json(os.path.join(config.model_path, "config.json"))
    dtype = resolve_dtype(config.dtype, hf_config, device)
    model, hf_config = load_model(config.model_path, dtype, device, config.context_length)
    if current().pp_size > model.args.num_layers:
        raise ValueError(f"--pp-size {current().pp_size} exceeds the model's {model.args.num_layers} layers")
    context_length = config.context_length or model.args.max_position_embeddings
    size = current().min_across(_pool_size(config, model, dtype, device, context_length))
    attn = model.attention_layers()
    pool = KVPool(size, len(attn), attn[0].kvh, attn[0].d, dtype, device)
    return model, hf_config, dtype, pool


def _put_all(items) -> None:
    for q, out in items:
        q.put_nowait(out)


class Engine:
    is_generation = True

    def __init__(self, config: EngineConfig):
        self.config = config
        self.device = _device(config.device)
        if config.page_size != 1:
            raise ValueError("only --page-size 1 is supported")
        check_parallel(config)
        self.model_path = config.model_path
        self.tokenizer = Tokenizer(config.tokenizer_path or config.model_path)
        torch.manual_seed(config.random_seed)
        model, self.hf_config, self.dtype, self.pool = load_shard(config, self.device)
        self.context_length = config.context_length or model.args.max_position_embeddings
        self.eos_token_ids = eos_token_ids(config.model_path, self.hf_config)
        if not self.eos_token_ids and self.tokenizer.eos_token_id is not None:
            self.eos_token_ids = {self.tokenizer.eos_token_id}
        self.vocab_size = model.args.vocab_size
        print(f"[radix_runtime] KV pool: {self.pool.size} tokens on {self.device} ({self.dtype})",
              file=sys.stderr, flush=True)
        self.runner = ModelRunner(model, self.pool, self.device)
        self.group = current()
        if self.group.world_size > 1:  # rank 0 of a group: every step goes to all ranks
            self.runner = LeaderRunner(StageRunner(self.runner, self.group), self.group.health.fail)
        self.scheduler = Scheduler(self.runner, self.pool, self.tokenizer, self.eos_token_ids,
                                   config, self.context_length)
        self._lock = threading.Lock()  # held around each scheduler step and admin call
        self._cv = threading.Condition()
        self._inbox: list[Req] = []
        self._aborts: list[str] = []
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._stop = False
        self.last_step_time = self._last_log = time.monotonic()
        self._last_gen = 0
        self._thread = threading.Thread(target=self._loop, name="radix-engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, config: EngineConfig) -> "Engine":
        return cls(config)

    @classmethod
    async def create(cls, config: EngineConfig) -> "Engine":
        """Load without blocking the event loop (weights can take minutes)."""
        return await asyncio.to_thread(cls, config)

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
                by_loop.setdefault(stream[0], []).append((stream[1], out))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # the caller's loop is closed
                pass

    # -- the Engine protocol --------------------------------------------------------------------
    def _validate(self, req: EngineRequest) -> None:
        n, m = len(req.input_ids), req.sampling.max_new_tokens
        if n == 0:
            raise InvalidRequestError("input_ids", "the prompt is empty")
        if any(not (0 <= t < self.vocab_size) for t in req.input_ids):
            raise InvalidRequestError("input_ids", f"token ids must be in [0, {self.vocab_size})")
        if n >= self.context_length:
            raise InvalidRequestError(
                "input_ids", f"the prompt has {n} tokens; this model's context length is {self.context_length}")
        if not req.embedding and n + m > self.context_length:
            raise InvalidRequestError(
                "max_new_tokens", f"prompt ({n} tokens) + max_new_tokens ({m}) exceeds the context "
                                  f"length {self.context_length}")
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
        q: asyncio.Queue = asyncio.Queue()
        self._streams[req.rid] = (asyncio.get_running_loop(), q)
        with self._cv:
            self._inbox.append(Req.from_engine(req))
            self._cv.notify()
        finished = False
        try:
            while True:
                out = await q.get()
                while not q.empty():  # a slow reader gets the latest (cumulative) update only
                    out = q.get_nowait()
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
            broken=self._broken(),
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
