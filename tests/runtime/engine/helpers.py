"""Helpers shared by the engine tests."""
from __future__ import annotations

import asyncio

from radix_runtime.core.config import EngineConfig
from radix_runtime.core.request import EngineRequest, SamplingParams
from radix_runtime.engine.radix_engine import RadixEngine


def make_engine(model_dir, **kw) -> RadixEngine:
    return RadixEngine(EngineConfig(model_path=str(model_dir), **kw))


def greedy(max_new_tokens: int = 16, **kw) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, **kw)


async def collect(engine: RadixEngine, req: EngineRequest):
    """Run one request to the end; returns (final output, number of updates)."""
    last, n = None, 0
    async for out in engine.generate(req):
        last, n = out, n + 1
    return last, n


async def run_all(engine: RadixEngine, reqs: list[EngineRequest]):
    return [o for o, _ in await asyncio.gather(*(collect(engine, r) for r in reqs))]


def shutdown(engine: RadixEngine) -> None:
    asyncio.run(engine.shutdown())
