"""Prometheus metrics, on a registry of this server's own (tests run several servers per process).

Gauges and counters are read from the engine's stats at scrape time; the latency histograms and the
hit-rate window are fed by the request path. Both the names in the Olla proxy's SGLang docs and
real SGLang's are exported so existing dashboards work.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from prometheus_client import (CollectorRegistry, Histogram, ProcessCollector,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from radix_runtime.core.protocol import EngineStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
_ITL_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                0.5, 1, 2.5)


class HitRateWindow:
    """Cached / prompt tokens over the most recent `window_tokens` prompt tokens of prefill work.

    Fed once per request when its prefill is done, so decode steps never move it (upstream's
    gauge is overwritten by decode logging and often reads 0). The window is the newest requests
    whose prompts add up to at least `window_tokens` (all of them while fewer have run).
    """

    def __init__(self, window_tokens: int = 1 << 18):
        self.window_tokens = window_tokens
        self._entries: deque[tuple[int, int]] = deque()
        self._prompt = 0
        self._cached = 0

    def add(self, prompt_tokens: int, cached_tokens: int) -> None:
        self._entries.append((prompt_tokens, cached_tokens))
        self._prompt += prompt_tokens
        self._cached += cached_tokens
        while self._entries and self._prompt - self._entries[0][0] >= self.window_tokens:
            p, c = self._entries.popleft()
            self._prompt -= p
            self._cached -= c

    @property
    def rate(self) -> float:
        return self._cached / self._prompt if self._prompt else 0.0

    @property
    def prompt_tokens(self) -> int:
        return self._prompt


class _EngineCollector:
    """Turns an EngineStats snapshot into metric families at scrape time."""

    def __init__(self, stats: Callable[[], EngineStats | None], window: HitRateWindow,
                 labels: dict[str, str]):
        self._stats = stats
        self._window = window
        self._labels = labels

    def collect(self):
        s = self._stats()
        names, values = list(self._labels), list(self._labels.values())

        def gauge(name, doc, value):
            g = GaugeMetricFamily(name, doc, labels=names)
            g.add_metric(values, value)
            return g

        def counter(name, doc, value):
            c = CounterMetricFamily(name, doc, labels=names)
            c.add_metric(values, value)
            return c

        running = s.num_running_reqs if s else 0
        waiting = s.num_waiting_reqs if s else 0
        hit = self._window.rate
        yield gauge("sglang:num_requests_running", "Requests running (in a batch)", running)
        yield gauge("sglang:num_requests_waiting", "Requests waiting in the queue", waiting)
        yield gauge("sglang:num_running_reqs", "Requests running (upstream name)", running)
        yield gauge("sglang:num_queue_reqs", "Requests waiting (upstream name)", waiting)
        yield gauge("sglang:radix_cache_usage_perc",
                    "Fraction of KV slots held by the radix cache", s.cache_usage if s else 0.0)
        yield gauge("sglang:token_usage", "Fraction of KV slots in use, evictable radix-cache "
                    "entries not counted (SGLang's meaning)", s.used_kv_fraction if s else 0.0)
        yield gauge("sglang:num_used_tokens", "KV slots in use, evictable cache not counted",
                    s.used_kv_tokens if s else 0)
        yield gauge("sglang:kv_held_usage", "Fraction of KV slots held (running + all cache)",
                    s.token_usage if s else 0.0)
        yield gauge("sglang:radix_cache_hit_rate",
                    "Cached / prompt tokens over a window of recent prefill work", hit)
        yield gauge("sglang:cache_hit_rate", "Same as sglang:radix_cache_hit_rate (upstream name)",
                    hit)
        yield gauge("sglang:max_total_num_tokens", "KV pool size in tokens",
                    s.total_kv_tokens if s else 0)
        if s is None:
            return
        yield counter("sglang:prompt_tokens", "Prompt tokens of all requests",
                      s.prompt_tokens_total)
        yield counter("sglang:cached_tokens", "Prompt tokens served from the radix cache",
                      s.cached_tokens_total)
        yield counter("sglang:computed_prefill_tokens",
                      "Prompt tokens run through the model (prompt minus cached)",
                      s.computed_prefill_tokens_total)
        yield counter("sglang:generation_tokens", "Generated tokens", s.generation_tokens_total)
        yield counter("sglang:num_retractions", "Requests retracted to free KV",
                      s.num_retractions_total)
        yield counter("sglang:forward_passes", "Target-model forward passes (scheduler steps)",
                      s.forward_passes_total)
        if s.speculative_algorithm is None:
            return
        # speculative decoding: vLLM-style counters (any window can be computed) and SGLang's
        # gauges, here over the server's lifetime (docs/speculative-decoding.md)
        drafts, proposed, accepted = (s.spec_drafts_total, s.spec_draft_tokens_total,
                                      s.spec_accepted_tokens_total)
        yield counter("sglang:spec_decode_num_drafts", "Verify rounds that had draft tokens "
                      "(one per request and step)", drafts)
        yield counter("sglang:spec_decode_num_draft_tokens", "Draft tokens proposed", proposed)
        yield counter("sglang:spec_decode_num_accepted_tokens",
                      "Draft tokens the target accepted", accepted)
        yield gauge("sglang:spec_accept_length", "Tokens per verify round (accepted drafts + the "
                    "target's own), mean since start", (accepted + drafts) / drafts if drafts else 0.0)
        yield gauge("sglang:spec_accept_rate", "Accepted / proposed draft tokens since start",
                    accepted / proposed if proposed else 0.0)


class ServerMetrics:
    def __init__(self, model_name: str, stats: Callable[[], EngineStats | None],
                 window_tokens: int = 1 << 18):
        disable_created_metrics()  # the *_created series only clutter dashboards
        self.registry = CollectorRegistry(auto_describe=False)
        self.hit_window = HitRateWindow(window_tokens)
        labels = {"model_name": model_name}
        self.registry.register(_EngineCollector(stats, self.hit_window, labels))
        # process_start_time_seconds: a new value means a new leader process (a group restart)
        ProcessCollector(registry=self.registry)
        self.ttft = Histogram("sglang:time_to_first_token_seconds", "Time to first token",
                              ["model_name"], buckets=_LATENCY_BUCKETS,
                              registry=self.registry).labels(model_name)
        self.duration = Histogram("sglang:request_duration_seconds", "End-to-end request time",
                                  ["model_name"], buckets=_LATENCY_BUCKETS,
                                  registry=self.registry).labels(model_name)
        self.e2e = Histogram("sglang:e2e_request_latency_seconds",
                             "End-to-end request time (upstream name)", ["model_name"],
                             buckets=_LATENCY_BUCKETS, registry=self.registry).labels(model_name)
        self.itl = Histogram("sglang:inter_token_latency_seconds",
                             "Time between output tokens (upstream name)", ["model_name"],
                             buckets=_ITL_BUCKETS, registry=self.registry).labels(model_name)

    def observe_prefill(self, prompt_tokens: int, cached_tokens: int, ttft: float) -> None:
        self.hit_window.add(prompt_tokens, cached_tokens)
        self.ttft.observe(ttft)

    def observe_tokens(self, seconds: float, new_tokens: int) -> None:
        """`new_tokens` output tokens arrived `seconds` after the previous ones: one observation of
        the mean gap per token, as upstream SGLang counts them."""
        for _ in range(new_tokens):
            self.itl.observe(seconds / new_tokens)

    def observe_finish(self, seconds: float) -> None:
        self.duration.observe(seconds)
        self.e2e.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
