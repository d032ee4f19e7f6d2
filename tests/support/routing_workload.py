"""The multi-tenant shared-prefix workload behind SMG's policies (used by the routing tests and
`python -m bench.routing`): T tenants, each with its own long system prefix, requests in a shuffled
order, whose prefixes do not all fit in one worker's KV pool (--max-total-tokens) but do fit in the
pools together. Each policy gets a fresh router and flushed worker caches; the aggregate hit rate
is cached / prompt tokens summed over the workers' /metrics counters."""
from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx

from .router import SmgRouter
from .server import RuntimeServer

POLICIES = ("cache_aware", "round_robin")
WORDS = [f"{a}{b}" for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "is")]


def tenant_prompts(tenants: int, per_tenant: int, prefix_words: int, suffix_words: int,
                   seed: int = 0) -> list[tuple[int, str]]:
    """(tenant, prompt) in a shuffled order: a tenant's prompts share its prefix, nothing else."""
    rng = random.Random(seed)
    prefixes = [f"tenant {t} system: " + " ".join(rng.choices(WORDS, k=prefix_words))
                for t in range(tenants)]
    out = [(t, prefixes[t] + " user: " + " ".join(rng.choices(WORDS, k=suffix_words)))
           for t in range(tenants) for _ in range(per_tenant)]
    rng.shuffle(out)
    return out


def counters(servers: list[RuntimeServer]) -> list[tuple[float, float]]:
    out = []
    for s in servers:
        m = s.metrics()
        out.append((m["sglang:prompt_tokens_total"], m["sglang:cached_tokens_total"]))
    return out


async def drive(url: str, model: str, prompts: list[str], concurrency: int,
                max_tokens: int) -> list[int]:
    """Status code of each request (completions, non-streaming)."""
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300) as client:
        async def one(p: str) -> int:
            async with sem:
                r = await client.post(url + "/v1/completions", json={
                    "model": model, "prompt": p, "max_tokens": max_tokens, "temperature": 0})
                return r.status_code
        return await asyncio.gather(*(one(p) for p in prompts))


def measure(policy: str, servers: list[RuntimeServer], model: str, prompts: list[str],
            log_dir: Path, concurrency: int = 6, max_tokens: int = 2) -> dict:
    for s in servers:
        httpx.post(s.url + "/flush_cache", timeout=30).raise_for_status()
    router = SmgRouter(policy, log_dir / f"smg-{policy}.log", worker_urls=[s.url for s in servers])
    try:
        router.wait_workers(len(servers))
        before = counters(servers)
        codes = asyncio.run(drive(router.url, model, prompts, concurrency, max_tokens))
        after = counters(servers)
    finally:
        router.stop()
    prompt = [a[0] - b[0] for a, b in zip(after, before)]
    cached = [a[1] - b[1] for a, b in zip(after, before)]
    return {"policy": policy, "requests": len(codes), "ok": sum(c == 200 for c in codes),
            "hit_rate": sum(cached) / max(1.0, sum(prompt)), "per_worker_prompt_tokens": prompt,
            "per_worker_hit_rate": [c / p if p else 0.0 for c, p in zip(cached, prompt)]}


def start_servers(model: Path | str, n: int, pool_tokens: int, log_dir: Path,
                  threads: int = 1) -> list[RuntimeServer]:
    servers = [RuntimeServer(model, ["--max-total-tokens", str(pool_tokens)],
                             log_dir / f"worker{i}.log", threads=threads) for i in range(n)]
    for s in servers:
        s.wait_ready()
    return servers


def run(model: Path | str, log_dir: Path, *, tenants: int = 6, per_tenant: int = 8,
        prefix_words: int = 150, suffix_words: int = 8, pool_tokens: int = 1024,
        workers: int = 3) -> list[dict]:
    """Both policies, same servers, same prompts; one result dict per policy."""
    prompts = [p for _, p in tenant_prompts(tenants, per_tenant, prefix_words, suffix_words)]
    servers = start_servers(model, workers, pool_tokens, log_dir)
    try:
        name = httpx.get(servers[0].url + "/v1/models").json()["data"][0]["id"]
        return [measure(p, servers, name, prompts, log_dir) for p in POLICIES]
    finally:
        for s in servers:
            s.stop()
