"""The scheduler: continuous batching over one mixed prefill/decode forward per step.

A step: (1) every decoding request gets one KV slot, evicting cached prefixes and, if that is not
enough, retracting requests back to the queue; (2) chunked prefills in progress continue within the
token budget; (3) waiting requests are admitted in policy order while budget and KV last, each
starting from its longest cached prefix; (4) one forward, sampling, stop checks; (5) prefilled
tokens are inserted into the radix tree right away so concurrent requests sharing them hit.
A step in which every running request decodes and nothing else can happen skips (1)-(3): it runs
over the batch kept from the previous such step (scheduler/decode_batch.py).
With overlap scheduling, while a decode batch is in flight the next one is planned from it (a
slot more per row, no admission or retraction) and launched before its tokens are committed
(scheduler/overlap.py).

`runner` is a ModelRunner, or in a process group rank 0's LeaderRunner (the same calls). Not
thread-safe: the engine calls it from its loop thread under a lock.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from ..cache.kv_pool import KVPool
from ..cache.radix_tree import RadixTree
from ..cache.slot_table import SlotTable
from ..core.config import EngineConfig
from ..core.forward_batch import SeqInput
from ..core.request import FORCE_STREAM_INTERVAL, EngineOutput
from ..executor.model_runner import ModelRunner
from ..grammar.backend import GrammarBackend
from ..tokenizer import IncrementalDetokenizer, Tokenizer
from . import policy
from .decode_batch import DecodeBatch, decodes_plainly
from .multimodal import chunk_embeds
from .overlap import Job, ModelThread
from .request import Req
from .sampling import SampleRow, argmax_rows, distribution, logprobs_of, plain_greedy, sample, unpenalized
from .speculative import verify


@dataclass
class StepTiming:
    """Always-on step counters (two perf_counter calls per step): wall time of whole steps and of
    the model's part (runner.forward + runner.logits, less the runner's host-side batch preparation,
    `host_s`), for all steps and for pure-decode steps.
    On CUDA the forward is asynchronous, so "model" ends at the launch unless RADIX_SYNC_TIMING=1
    (a synchronize after the model's part; costs a little).
    With overlap scheduling (scheduler/overlap.py) a pipelined step is one committed batch, and
    its time is the wall time since the previous commit (the engine loop around the steps
    included): the rest is then the time the model was not running. `overlapped_s` is the
    scheduler thread's work done while a forward was in flight, which the overlap hid."""
    steps: int = 0
    step_s: float = 0.0
    model_s: float = 0.0
    decode_steps: int = 0
    decode_step_s: float = 0.0
    decode_model_s: float = 0.0
    overlapped_s: float = 0.0

    def add(self, step_s: float, model_s: float, decode: bool) -> None:
        self.steps += 1
        self.step_s += step_s
        self.model_s += model_s
        if decode:
            self.decode_steps += 1
            self.decode_step_s += step_s
            self.decode_model_s += model_s


_SYNC_TIMING = os.environ.get("RADIX_SYNC_TIMING") == "1"


class Scheduler:
    def __init__(self, runner: ModelRunner, pool: KVPool, tokenizer: Tokenizer, eos_ids: set[int],
                 config: EngineConfig, context_length: int, grammar: GrammarBackend | None = None,
                 spec=None, overlap: bool = False):
        self.runner, self.pool, self.tok = runner, pool, tokenizer
        self.grammar = grammar  # masks constrained rows' logits (requests carry their matcher)
        self.alloc = pool.allocator
        self.eos_ids = set(eos_ids)
        self.cfg = config
        self.context_length = context_length
        self.use_cache = not config.disable_radix_cache
        self.tree = RadixTree(self.alloc.free)
        self.waiting: list[Req] = []
        self.running: list[Req] = []
        # prefill tokens per step: one chunk size (--chunked-prefill-size; <= 0 turns chunking off)
        # and never more than --max-prefill-tokens
        chunk = config.chunked_prefill_size if config.chunked_prefill_size > 0 else config.max_prefill_tokens
        self.budget = min(chunk, config.max_prefill_tokens)
        self.generator = torch.Generator().manual_seed(config.random_seed)
        self.prompt_tokens_total = 0
        self.cached_tokens_total = 0
        self.computed_prefill_tokens_total = 0
        self.generation_tokens_total = 0
        self.num_retractions_total = 0
        self.evicted_tokens_total = 0
        self.init_new_token_ratio = self.new_token_ratio = policy.INIT_NEW_TOKEN_RATIO
        self.min_new_token_ratio = policy.MIN_NEW_TOKEN_RATIO
        # speculative decoding: a proposer of scheduler/speculative.py, None when off
        self.spec = spec
        self.forward_passes_total = 0  # target forwards (one per step)
        self.spec_drafts_total = 0  # (request, round) pairs that verified drafts
        self.spec_draft_tokens_total = 0
        self.spec_accepted_tokens_total = 0
        self.timing = StepTiming()
        self._model_s = 0.0  # this step's model time (set by _run)
        self.slots = SlotTable(rows=min(config.max_running_requests, 64))  # every request's kv_slots
        # a group's LeaderRunner pickles the SeqInputs to the other ranks: a view of the table
        # would carry the whole table along, so their slot lists are copies there
        self._copy_slots = not isinstance(runner, ModelRunner)
        # overlap scheduling (scheduler/overlap.py): the model thread, the job it runs or ran last
        # whose tokens are not committed yet, and when the last pipelined commit ended
        self._model_thread = ModelThread(runner, _SYNC_TIMING) if overlap and spec is None else None
        self._inflight: Job | None = None
        self._pipe_t: float | None = None
        # the running requests as one decode batch kept across pure-decode steps
        # (scheduler/decode_batch.py); None whenever the running set changed since
        self._decoding: DecodeBatch | None = None
        # where the runner takes one (a ModelRunner; a group's LeaderRunner hands its ranks
        # SeqInputs), and not with speculative decoding or overlap scheduling (their steps plan
        # rows of their own)
        self._batch_decode = (hasattr(runner, "forward_decode") and spec is None
                              and self._model_thread is None)

    # -- requests in and out ------------------------------------------------------------------
    def add(self, req: Req) -> None:
        req.slot_table = self.slots
        req.detok = IncrementalDetokenizer(self.tok, req.sampling.skip_special_tokens)
        if req.sampling.seed is not None:
            req.seed_gen = torch.Generator().manual_seed(req.sampling.seed)
        self.waiting.append(req)

    def abort(self, rid: str) -> EngineOutput | None:
        for r in self.waiting:
            if r.rid == rid:
                self.waiting.remove(r)
                return self._abort_output(r)
        for r in self.running:
            if r.rid == rid:
                self.running.remove(r)
                self._release(r)
                return self._abort_output(r)
        return None

    def _abort_output(self, r: Req) -> EngineOutput:
        if r.detok is not None and not r.embedding:
            r.text = self._detok(r, len(r.output_ids))
        r.finished = True
        r.finish_reason = {"type": "abort", "message": "request aborted"}
        return self._output(r)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self._inflight)

    def close(self) -> None:
        """Wait for a forward still in flight (its tokens are dropped) and stop the model thread."""
        job, self._inflight = self._inflight, None
        if job is not None:
            job.done.wait()
        if self._model_thread is not None:
            self._model_thread.close()
            self._model_thread = None

    # -- KV bookkeeping -----------------------------------------------------------------------
    def _alloc(self, n: int) -> torch.Tensor | None:
        short = n - self.alloc.available()
        if short > 0 and self.use_cache:
            self.evicted_tokens_total += self.tree.evict(short)
        return self.alloc.alloc(n)

    def _available(self) -> int:
        return self.alloc.available() + (self.tree.evictable_size if self.use_cache else 0)

    def _cache_prefix(self, r: Req) -> None:
        """Insert r's computed tokens into the tree; take the tree's slots as canonical (freeing
        r's duplicates of tokens another request cached first) and move r's lock down to them."""
        if not self.use_cache or r.kv_len == r.cache_len:
            return
        keys = r.fill_ids[:r.kv_len]
        existed = self.tree.insert(keys, r.kv_slots[:r.kv_len])
        if existed > r.cache_len:
            self.alloc.free(r.kv_slots[r.cache_len:existed])
        slots, node = self.tree.match_prefix(keys)
        assert slots.numel() == r.kv_len
        self.tree.inc_lock(node)
        if r.last_node is not None:
            self.tree.dec_lock(r.last_node)
        r.kv_slots = torch.cat((slots, r.kv_slots[r.kv_len:]))
        r.cache_len, r.last_node = r.kv_len, node

    def _release(self, r: Req) -> None:
        """Give up r's KV: cache what it computed (it stays evictable), free the rest. Every
        request leaving the running set comes through here."""
        self._decoding = None
        self._cache_prefix(r)
        self.alloc.free(r.kv_slots[r.cache_len:])
        if r.last_node is not None:
            self.tree.dec_lock(r.last_node)
        r.kv_slots, r.kv_len, r.cache_len, r.last_node = r.kv_slots[:0], 0, 0, None

    def _retract(self, r: Req) -> None:
        self.running.remove(r)
        self._release(r)
        r.num_retractions += 1
        self.num_retractions_total += 1
        self.waiting.insert(0, r)

    # -- one step -----------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[EngineOutput]:
        t0 = time.perf_counter()
        if self._inflight is None:
            return self._step(t0)
        rows = self._pipeline_rows()
        if rows is not None:
            return self._pipelined_step(t0, *rows)
        outputs = self._commit(self._take_inflight())  # the pipeline drains
        self._pipe_t = None
        return outputs + self._step(time.perf_counter())

    def _step(self, t0: float) -> list[EngineOutput]:
        db = self._decode_batch()
        if db is not None:
            return self._decode_step(t0, db)
        self._decoding = None  # this step changes what the batch knows (kv_len, slots)
        plan: list[tuple[Req, int]] = []
        retracted = self._schedule_running(plan)
        while not plan and len(self.running) > 1:
            # chunked prefills holding KV starve each other: retract until one can go on (a
            # request alone always fits, the engine rejects any that would not)
            self._retract(policy.retract_order(self.running)[0])
            retracted = self._schedule_running(plan) or True
        if retracted:
            self.new_token_ratio = self.init_new_token_ratio
        else:
            self.new_token_ratio = max(self.new_token_ratio - policy.NEW_TOKEN_RATIO_DECAY,
                                       self.min_new_token_ratio)
            self._admit(plan)
        for r in self.waiting:
            r.wait_steps += 1
        if not plan:
            return []
        if self.spec is not None:
            self._reserve_drafts(plan)
        decode = all(n == 1 and r.kv_len >= len(r.input_ids) for r, n in plan)
        if decode and self._model_thread is not None and all(
                r.output_ids and r.kv_len == r.fill_len - 1 and self._pipelinable(r, 0) for r, _ in plan):
            reqs = [r for r, _ in plan]
            seqs = [SeqInput([r.output_ids[-1]], r.kv_len, self._slots_of(r, r.kv_len + 1)) for r in reqs]
            self._launch(self._job(reqs, seqs, t0))
            return []  # its tokens come with the next step
        self._model_s = 0.0
        outputs = self._run(plan)
        self.timing.add(time.perf_counter() - t0, self._model_s, decode)
        return outputs

    # -- pure-decode steps over a DecodeBatch (scheduler/decode_batch.py) ----------------------
    def _decode_batch(self) -> DecodeBatch | None:
        """The batch for a step in which every running request decodes plainly and nothing else
        can happen (no admission, enough KV without retracting): kept from the last step, or
        built now. None: the planned step decides."""
        running = self.running
        if not (self._batch_decode and running):
            return None
        if self.waiting and len(running) < self.cfg.max_running_requests:
            return None  # a request may be admitted
        if self._available() < len(running):
            return None  # eviction may not be enough: retraction decides
        db = self._decoding
        if db is not None and db.usable(self.slots):
            return db
        if not all(decodes_plainly(r) for r in running):
            return None
        argmax = all(self._argmax_only(r) for r in running)
        db = self._decoding = DecodeBatch(list(running), self.slots, self.context_length,
                                          [self._stop_ids(r) for r in running], argmax)
        return db

    def _decode_step(self, t0: float, db: DecodeBatch) -> list[EngineOutput]:
        """One decode token for every running request: the synchronous step's decisions for a
        batch that only decodes (no plan), its tokens handled as _append_token does."""
        self.new_token_ratio = max(self.new_token_ratio - policy.NEW_TOKEN_RATIO_DECAY, self.min_new_token_ratio)
        for r in self.waiting:
            r.wait_steps += 1
        new = self._alloc(len(db.reqs))
        db.write_slots(new)
        fb = self.runner.table_decode_batch(db.ids, db.pos, db.data, db.rows, db.addr, new)
        self._model_s = 0.0
        t1, host0 = time.perf_counter(), getattr(self.runner, "host_s", 0.0)
        _, logits = self.runner.forward_decode(fb)
        self._model_done(t1, host0)
        self.forward_passes_total += 1
        if db.sample_rows is None:
            next_ids = argmax_rows(logits)
        else:
            next_ids = sample(logits, db.sample_rows, self.generator)
        ids = next_ids.tolist()
        db.advance(next_ids)
        outputs: list[EngineOutput] = []
        checked = 0  # tokens _append_token counted
        for r, t, limit, stops, strings in zip(db.reqs, ids, db.limits, db.stop_ids, db.stop_strings):
            r.kv_len += 1
            out = r.output_ids
            if strings or t in stops or len(out) + 1 >= limit:  # it may finish: the whole check
                self._append_token(r, t, outputs)
                checked += 1
                continue
            out.append(t)
            if r.stream or len(out) % FORCE_STREAM_INTERVAL == 0:  # (its first token came before)
                r.text = self._detok(r, len(out))
                outputs.append(self._output(r))
        self.generation_tokens_total += len(ids) - checked
        self.timing.add(time.perf_counter() - t0, self._model_s, True)
        return outputs

    # -- overlap scheduling (scheduler/overlap.py) ---------------------------------------------
    def _pipelinable(self, r: Req, pending: int) -> bool:
        """r's next token, with `pending` tokens still uncommitted, depends on its logits and
        parameters only (no bias, penalties, grammar, stop tokens masked by min_new_tokens) and
        needs nothing the model thread does not have (logprobs, images)."""
        return (unpenalized(r.sampling) and r.grammar is None and not r.return_logprob and not r.images
                and (len(r.output_ids) + pending >= r.sampling.min_new_tokens or not self._stop_ids(r)))

    def _job(self, reqs: list[Req], seqs: list[SeqInput], t0: float, **kw) -> Job:
        """A pipelined job; rows that do not sample greedily draw on the model thread from their
        own generator, or the scheduler's (nothing else draws from it while a job is in flight)."""
        if all(r.sampling.temperature < 1e-6 for r in reqs):
            return Job(reqs, seqs, t_plan=t0, **kw)
        rows = [SampleRow(r.sampling, [], [], frozenset(), r.seed_gen) for r in reqs]
        return Job(reqs, seqs, t_plan=t0, rows=rows, generator=self.generator, **kw)

    def _pipeline_rows(self) -> tuple[list[Req], list[int]] | None:
        """The next batch while one is in flight: its rows that go on, as (requests, their rows in
        the in-flight job); None when the synchronous step has to decide (a request may be
        admitted, KV is short, a row needs the synchronous sampler)."""
        prev = self._inflight
        alive = [j for j, r in enumerate(prev.reqs) if not r.finished]
        if len(alive) != len(self.running):
            return None
        if self.waiting and len(self.running) < self.cfg.max_running_requests:
            return None
        # requests the in-flight token finishes by length stay out (known ahead, unlike stops)
        src = [j for j in alive if len(prev.reqs[j].output_ids) + 1 < prev.reqs[j].sampling.max_new_tokens
               and prev.reqs[j].fill_len + 1 < self.context_length]
        reqs = [prev.reqs[j] for j in src]
        if not reqs or self._available() < len(reqs) or not all(self._pipelinable(r, 1) for r in reqs):
            return None
        return reqs, src

    def _pipelined_step(self, t0: float, reqs: list[Req], src: list[int]) -> list[EngineOutput]:
        """Plan and launch the next batch, then commit the one in flight."""
        prev = self._inflight
        # the synchronous step's bookkeeping; no retraction (every row got its slot)
        self.new_token_ratio = max(self.new_token_ratio - policy.NEW_TOKEN_RATIO_DECAY, self.min_new_token_ratio)
        for r in self.waiting:
            r.wait_steps += 1
        self._append_slots(reqs, self._alloc(len(reqs)))
        # input tokens: filled in by the model thread from prev's argmax
        seqs = [SeqInput([0], r.kv_len + 1, self._slots_of(r, r.kv_len + 2)) for r in reqs]
        self._launch(self._job(reqs, seqs, t0, prev=prev, src=src))
        if not prev.done.is_set():  # planned while prev's forward ran
            self.timing.overlapped_s += time.perf_counter() - t0
        return self._commit(prev, hidden=True)

    def _launch(self, job: Job) -> None:
        self._model_thread.submit(job)
        self._inflight = job
        self.forward_passes_total += 1

    def _take_inflight(self) -> Job:
        job, self._inflight = self._inflight, None
        return job

    def _commit(self, job: Job, hidden: bool = False) -> list[EngineOutput]:
        """job's tokens into its requests (the rows of requests finished meanwhile were spare).
        hidden: the next job is in flight, so this work overlaps its forward."""
        try:
            ids = job.wait()
        except BaseException:
            # a job planned from this one fails too: let it end, and nothing stays in flight
            nxt, self._inflight = self._inflight, None
            if nxt is not None:
                nxt.done.wait()
            raise
        t1 = time.perf_counter()
        outputs: list[EngineOutput] = []
        for r, t in zip(job.reqs, ids):
            if not r.finished:
                r.kv_len += 1
                self._append_token(r, t, outputs)
        now, tm = time.perf_counter(), self.timing
        if hidden:
            tm.overlapped_s += now - t1
        period = now - (self._pipe_t if self._pipe_t is not None else job.t_plan)
        self._pipe_t = now
        tm.add(period, job.model_s, True)
        return outputs

    def _model_done(self, t0: float, host0: float = 0.0) -> None:
        """Count the model's time since t0, less the runner's host-side work since host0."""
        if _SYNC_TIMING and torch.cuda.is_available():
            torch.cuda.synchronize()
        self._model_s += time.perf_counter() - t0 - (getattr(self.runner, "host_s", 0.0) - host0)

    def _reserve_drafts(self, plan: list[tuple[Req, int]]) -> None:
        """Draft slots for decoding requests, from free slots only (drafting never evicts cache):
        they follow the decode slot in kv_slots; the rejected ones are freed after the step."""
        free = self.alloc.available()
        for r, n in plan:
            if free <= 0:
                break
            if n != 1 or r.kv_len < len(r.input_ids) or r.grammar is not None or r.embedding:
                continue
            limit = min(r.sampling.max_new_tokens - len(r.output_ids) - 1,
                        self.context_length - r.fill_len - 1, free)
            k = self.spec.plan(r, limit) if limit > 0 else 0
            if k > 0:
                r.kv_slots = torch.cat((r.kv_slots, self.alloc.alloc(k)))
                r.spec_k = k
                free -= k

    def _schedule_running(self, plan: list[tuple[Req, int]]) -> bool:
        decodes, longer = [], []  # one token to run / a prefill (chunk) to continue
        for r in self.running:
            rem = r.remaining
            if rem == 1:
                decodes.append(r)
            elif rem > 1:
                longer.append(r)
        retracted = False
        while len(decodes) > self._available():
            victim = policy.retract_order(self.running)[0]
            for group in (decodes, longer):
                if victim in group:
                    group.remove(victim)
            self._retract(victim)
            retracted = True
        if decodes:  # one allocation and one table write for all of them
            self._append_slots(decodes, self._alloc(len(decodes)))
            plan.extend((r, 1) for r in decodes)
        budget = self.budget
        for r in longer:
            if budget > 0:
                n = min(r.remaining, budget, self._available())
                if n > 0:
                    r.kv_slots = torch.cat((r.kv_slots, self._alloc(n)))
                    plan.append((r, n))
                    budget -= n
        self._budget_left = budget
        return retracted

    def _append_slots(self, reqs: list[Req], new: torch.Tensor) -> None:
        """One more slot for each of reqs (new[j] for reqs[j]) with one table write."""
        rows, pos = [], []
        for r in reqs:
            if r.slot_row < 0:
                r.slot_row = self.slots.acquire()
            rows.append(r.slot_row)
            pos.append(r.num_slots)
            r.num_slots += 1
        self.slots.append(rows, pos, new)

    def _admit(self, plan: list[tuple[Req, int]]) -> None:
        budget = self._budget_left
        if not self.waiting or budget <= 0:
            return
        # matching every waiting request each round costs O(queue x prompt): past a long queue
        # lpm falls back to arrival order, as SGLang does
        lpm = self.cfg.schedule_policy == "lpm" and self.use_cache and len(self.waiting) <= policy.LPM_MAX_QUEUE
        if lpm:
            for r in self.waiting:
                r.match_len = self.tree.match_prefix(r.fill_ids[:r.match_limit()])[0].numel()
        defer_shared = self.cfg.schedule_policy == "lpm" and self.use_cache
        in_batch = RadixTree()  # prompts being prefilled this round
        for r, n in plan:
            if r.kv_len < len(r.input_ids):
                in_batch.insert(r.fill_ids, torch.zeros(r.fill_len, dtype=torch.int64))
        ratio = self.new_token_ratio
        reserved = policy.reserved_tokens(self.running, ratio)
        for r in policy.order_queue(self.waiting, "lpm" if lpm else "fcfs"):
            if budget <= 0 or len(self.running) >= self.cfg.max_running_requests:
                break
            if self.use_cache:
                slots, node = self.tree.match_prefix(r.fill_ids[:r.match_limit()])
            else:
                slots, node = r.kv_slots[:0], None
            prefix = slots.numel()
            if defer_shared and r.wait_steps < policy.MAX_WAIT_ROUNDS:
                shared = in_batch.match_prefix(r.fill_ids)[0].numel()
                if shared - prefix >= policy.IN_BATCH_PREFIX_MIN:
                    continue
            if node is not None:
                self.tree.inc_lock(node)
            n = min(r.fill_len - prefix, budget)
            if not policy.can_admit(n, r.fill_len - prefix + r.max_future_tokens() - r.remaining,
                                    self._available(), reserved, bool(self.running), ratio):
                if node is not None:
                    self.tree.dec_lock(node)
                break
            r.kv_slots = torch.cat((slots, self._alloc(n)))
            r.kv_len = r.cache_len = prefix
            r.last_node = node
            if not r.admitted_once:
                r.admitted_once = True
                r.cached_tokens = prefix
                self.prompt_tokens_total += len(r.input_ids)
                self.cached_tokens_total += prefix
            self.waiting.remove(r)
            self.running.append(r)
            self._decoding = None
            plan.append((r, n))
            budget -= n
            reserved += int(max(r.max_future_tokens() - n, 0) * ratio)
            in_batch.insert(r.fill_ids, torch.zeros(r.fill_len, dtype=torch.int64))

    def _run(self, plan: list[tuple[Req, int]]) -> list[EngineOutput]:
        seqs: list[SeqInput | None] = []
        all_decode = True  # every row runs its last sampled token
        rows = self.slots.row  # (the per-row work below is inlined: it runs for every request)
        for r, n in plan:
            if r.spec_k:
                seqs.append(None)  # verify sequence, once the drafts are known
                all_decode = False
                continue
            out = r.output_ids
            if n == 1 and out and r.kv_len == len(r.input_ids) + len(out) - 1 and not r.images:
                # a decode: its token is the last sampled one
                slots = rows[r.slot_row][:r.kv_len + 1]
                seqs.append(SeqInput([out[-1]], r.kv_len, slots.clone() if self._copy_slots else slots))
                continue
            all_decode = False
            want_input_lp = r.return_logprob and r.logprob_start_len >= 0 and r.kv_len < len(r.input_ids)
            seqs.append(SeqInput(r.fill_ids[r.kv_len:r.kv_len + n], r.kv_len,
                                 self._slots_of(r, r.kv_len + n), all_logits=want_input_lp,
                                 embeds=chunk_embeds(r, r.kv_len, n, self.runner.encode_images)
                                 if r.images else []))
        spec_q = self._propose(plan, seqs) if self.spec is not None else {}
        trim: list[Req] = []  # verified, still running: rejected draft slots freed at once below
        t0, host0 = time.perf_counter(), getattr(self.runner, "host_s", 0.0)
        last_hidden, full_logits = self.runner.forward(seqs)
        self._model_done(t0, host0)
        self.forward_passes_total += 1
        outputs: list[EngineOutput] = []
        if all_decode and not full_logits:  # nothing to cache, every row samples
            for r, _ in plan:
                r.kv_len += 1
            return self._sample_rows(plan, list(range(len(plan))), last_hidden, outputs)
        sample_idx: list[int] = []
        for i, (r, n) in enumerate(plan):
            if r.spec_k:
                self._verify(r, full_logits[i], spec_q[i], outputs)
                if not r.finished:
                    trim.append(r)
                continue
            if i in full_logits:
                self._input_logprobs(r, r.kv_len, full_logits[i])
            if n > 1 or r.kv_len < len(r.input_ids):
                self.computed_prefill_tokens_total += n
            r.kv_len += n
            if r.remaining > 0:  # chunk of a longer prefill
                self._cache_prefix(r)
                continue
            if n > 1:
                self._cache_prefix(r)
            if r.embedding:
                h = last_hidden[i].float()
                r.embedding_out = torch.nn.functional.normalize(h, dim=-1).cpu().tolist()
                self._finish(r, {"type": "stop", "matched": None}, outputs)
            elif r.sampling.max_new_tokens == 0:
                self._finish(r, {"type": "length", "length": 0}, outputs)
            else:
                sample_idx.append(i)
        if trim:  # one free for all (each copies the free list)
            self.alloc.free(torch.cat([r.kv_slots[r.kv_len:] for r in trim]))
            for r in trim:
                r.num_slots = r.kv_len
        return self._sample_rows(plan, sample_idx, last_hidden, outputs)

    def _sample_rows(self, plan, sample_idx: list[int], last_hidden, outputs: list[EngineOutput]):
        if sample_idx:
            t0, host0 = time.perf_counter(), getattr(self.runner, "host_s", 0.0)
            logits = self.runner.logits(last_hidden, sample_idx)
            self._model_done(t0, host0)
            self._sample([plan[i][0] for i in sample_idx], logits, outputs)
        return outputs

    def _slots_of(self, r: Req, n: int) -> torch.Tensor:
        """r's first n slots for a SeqInput: a view of its table row (a copy for a group)."""
        view = self.slots.row[r.slot_row][:n]
        return view.clone() if self._copy_slots else view

    # -- speculative decoding (scheduler/speculative.py) ----------------------------------------
    def _row(self, r: Req, extra: list[int]) -> SampleRow:
        """r's SampleRow as if `extra` (drafts) had been generated already."""
        return SampleRow(r.sampling, r.input_ids, r.output_ids + extra, self._stop_ids(r), r.seed_gen)

    def _propose(self, plan: list[tuple[Req, int]], seqs: list[SeqInput | None]) -> dict:
        """Drafts for the spec requests; their verify sequences replace the placeholders in seqs."""
        spec = [i for i, (r, _) in enumerate(plan) if r.spec_k]
        qs = self.spec.propose([plan[i][0] for i in spec], [s for s in seqs if s is not None],
                               self._row, self.generator)
        for i in spec:
            r = plan[i][0]
            seqs[i] = SeqInput([r.fill_ids[r.kv_len], *r.spec_draft], r.kv_len,
                               self._slots_of(r, r.kv_len + 1 + r.spec_k), all_logits=True)
        return dict(zip(spec, qs))

    def _verify(self, r: Req, logits: torch.Tensor, q: torch.Tensor | None,
                outputs: list[EngineOutput]) -> None:
        """Accept r's drafts against the target's logits [k+1, V] and append the tokens. The KV
        slots of rejected drafts stay past kv_len until _run frees them."""
        drafts, k, p0 = r.spec_draft, r.spec_k, r.kv_len
        raw = logits.float().clone() if r.return_logprob else None  # logprobs: of the raw logits
        rows = [self._row(r, drafts[:j]) for j in range(k + 1)]
        probs = distribution(logits.float(), rows)
        greedy = r.sampling.temperature < 1e-6
        a, nxt = verify(probs, drafts, q, greedy, r.seed_gen or self.generator)
        self.spec_drafts_total += 1
        self.spec_draft_tokens_total += k
        self.spec_accepted_tokens_total += a
        r.spec_k, r.spec_draft = 0, None
        tokens = [*drafts[:a], nxt]
        if raw is not None:
            chosen, top = logprobs_of(raw[:a + 1], torch.tensor(tokens), r.top_logprobs_num)
        mine: list[EngineOutput] = []
        for j, t in enumerate(tokens, 1):
            r.kv_len = p0 + min(j, a) + 1  # KV is valid for the decode token and accepted drafts
            if raw is not None:
                r.output_logprobs.append((float(chosen[j - 1]), t))
                if r.top_logprobs_num > 0:
                    m = r.top_logprobs_num
                    r.output_top_logprobs.append(list(zip(top[0][j - 1, :m].tolist(), top[1][j - 1, :m].tolist())))
            self._append_token(r, t, mine)
            if r.finished:
                break
        outputs.extend(mine[-1:])  # cumulative: the last update says it all

    def _argmax_only(self, r: Req) -> bool:
        """r's next token is the argmax of its raw logits (what sample() would pick)."""
        if r.plain_greedy is None:
            r.plain_greedy = plain_greedy(r.sampling)
        return (r.plain_greedy and r.grammar is None
                and (len(r.output_ids) >= r.sampling.min_new_tokens or not self._stop_ids(r)))

    def _sample(self, reqs: list[Req], logits: torch.Tensor, outputs: list[EngineOutput]) -> None:
        lp_rows = [j for j, r in enumerate(reqs) if r.return_logprob]
        raw = logits[lp_rows].clone() if lp_rows else None
        if all(self._argmax_only(r) for r in reqs):  # the common batch: one argmax, no rows
            next_ids = argmax_rows(logits).tolist()
        else:
            if self.grammar is not None:
                self.grammar.apply_masks(logits, [r.grammar for r in reqs])
            # a grammar decides when a stop token may come: min_new_tokens does not mask it then
            rows = [SampleRow(r.sampling, r.input_ids, r.output_ids,
                              set() if r.grammar is not None else self._stop_ids(r), r.seed_gen)
                    for r in reqs]
            next_ids = sample(logits, rows, self.generator).tolist()
        if lp_rows:
            top_n = max(reqs[j].top_logprobs_num for j in lp_rows)
            chosen, top = logprobs_of(raw, torch.tensor([next_ids[j] for j in lp_rows]), top_n)
            for k, j in enumerate(lp_rows):
                r = reqs[j]
                r.output_logprobs.append((float(chosen[k]), next_ids[j]))
                if r.top_logprobs_num > 0:
                    m = r.top_logprobs_num
                    r.output_top_logprobs.append(list(zip(top[0][k, :m].tolist(), top[1][k, :m].tolist())))
        for r, t in zip(reqs, next_ids):
            self._append_token(r, t, outputs)

    def _stop_ids(self, r: Req) -> frozenset[int]:
        if r.stop_ids is None:
            ids = set(r.sampling.stop_token_ids or ())
            if not r.sampling.ignore_eos:
                ids |= self.eos_ids
            r.stop_ids = frozenset(ids)
        return r.stop_ids

    def _input_logprobs(self, r: Req, start: int, logits: torch.Tensor) -> None:
        """logits[j] (position start+j) scores token start+j+1; keep those from logprob_start_len."""
        s, plen = r.logprob_start_len, len(r.input_ids)
        if start == 0 and s == 0:
            r.input_logprobs.append((None, r.input_ids[0]))
        targets = r.input_ids[start + 1:start + 1 + logits.shape[0]]
        if not targets:
            return
        lp = torch.log_softmax(logits[:len(targets)].float(), -1)
        vals = lp.gather(1, torch.tensor(targets, device=lp.device)[:, None]).flatten().tolist()
        for k, (v, t) in enumerate(zip(vals, targets)):
            if start + 1 + k >= s and start + 1 + k < plen:
                r.input_logprobs.append((v, t))

    def _append_token(self, r: Req, t: int, outputs: list[EngineOutput]) -> None:
        p = r.sampling
        if r.grammar is not None and not self.grammar.accept(r.grammar, t):
            r.finished = True  # cannot happen with the mask applied; never emit an invalid token
            r.finish_reason = {"type": "abort", "message": f"token {t} violates the grammar"}
            self.running.remove(r)
            self._release(r)
            outputs.append(self._output(r))
            return
        r.output_ids.append(t)
        self.generation_tokens_total += 1
        n_out = len(r.output_ids)
        if n_out >= p.max_new_tokens:
            self._detok(r, n_out)
            return self._finish(r, {"type": "length", "length": p.max_new_tokens}, outputs)
        if n_out >= p.min_new_tokens and t in self._stop_ids(r):
            self._detok(r, n_out if p.no_stop_trim else n_out - 1)
            return self._finish(r, {"type": "stop", "matched": t}, outputs)
        prev = len(r.detok.text)  # (a request with stop strings never lags: this is its text)
        text = self._detok(r, n_out)
        if p.stop and n_out >= p.min_new_tokens:
            hits = [(i, s) for s in p.stop if s and (i := text.find(s, max(0, prev - len(s) + 1))) >= 0]
            if hits:
                idx, s = min(hits)
                r.text = text if p.no_stop_trim else text[:idx]
                return self._finish(r, {"type": "stop", "matched": s}, outputs, keep_text=True)
        if len(r.input_ids) + n_out >= self.context_length:  # fill_len, inlined
            return self._finish(r, {"type": "length", "length": n_out}, outputs)
        r.text = text
        if r.stream or n_out == 1 or n_out % FORCE_STREAM_INTERVAL == 0:
            outputs.append(self._output(r))

    def _detok(self, r: Req, upto: int) -> str:
        """r's text through output_ids[:upto]: the detokenizer catches up on the tokens of a
        non-streaming request that the decode steps left to it (decoding them together is
        cheaper than one at a time)."""
        n = r.detok_len
        if upto <= n:
            return r.detok.text
        r.detok_len = upto
        return r.detok.add_one(r.output_ids[n]) if upto == n + 1 else r.detok.add(r.output_ids[n:upto])

    def _finish(self, r: Req, reason: dict, outputs: list[EngineOutput], keep_text: bool = False) -> None:
        r.finished, r.finish_reason = True, reason
        if not keep_text and not r.embedding:
            r.text = r.detok.flush()
        self.running.remove(r)
        self._release(r)
        outputs.append(self._output(r))

    def _output(self, r: Req) -> EngineOutput:
        # positional (rid, output_ids, text, finished, finish_reason, prompt_tokens, cached_tokens,
        # completion_tokens): half the cost of keywords, once per running request per step
        out = EngineOutput(r.rid, list(r.output_ids), r.text, r.finished, r.finish_reason,
                           len(r.input_ids), r.cached_tokens, len(r.output_ids))
        if r.return_logprob:
            out.input_token_logprobs = list(r.input_logprobs)
            out.output_token_logprobs = list(r.output_logprobs)
            if r.top_logprobs_num:
                out.output_top_logprobs = list(r.output_top_logprobs)
        out.embedding = r.embedding_out
        return out

    # -- admin ----------------------------------------------------------------------------------
    def flush_cache(self) -> bool:
        if self.running or self.waiting:
            return False
        if self.use_cache:
            self.alloc.free(self.tree.all_slots())
            self.tree.reset()
        return True

    def check_integrity(self) -> None:
        """free + cached + in-use == total, with every slot accounted exactly once."""
        self.tree.check()
        free = self.alloc.free_slots
        cached = self.tree.all_slots()
        in_use = [r.kv_slots[r.cache_len:] for r in self.running]
        n_use = sum(s.numel() for s in in_use)
        total = free.numel() + cached.numel() + n_use
        assert total == self.pool.size, (free.numel(), cached.numel(), n_use, self.pool.size)
        allslots = torch.cat([free, cached, *in_use]) if total else free
        assert torch.equal(allslots.sort().values, torch.arange(1, self.pool.size + 1)), "slot owned twice"
        for r in self.waiting:
            assert r.kv_len == 0 and r.kv_slots.numel() == 0 and r.last_node is None
            assert r.slot_row < 0, "a waiting request holds a slot table row"
        rows = [r.slot_row for r in self.running if r.slot_row >= 0]
        assert len(set(rows)) == len(rows) == self.slots.rows_in_use, (rows, self.slots.rows_in_use)
        if not self.running:
            assert self.tree.protected_size == 0, self.tree.protected_size

    def kv_usage(self) -> tuple[float, float]:
        size = self.pool.size
        used = size - self.alloc.available()
        return used / size, self.tree.total_size() / size
