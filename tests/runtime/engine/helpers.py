"""Helpers shared by the engine tests."""
from __future__ import annotations

import asyncio

import torch

from radix_runtime.engine.engine import Engine
from radix_runtime.engine.protocol import EngineConfig, EngineRequest, SamplingParams


def hf_greedy(model, ids: list[int], max_new_tokens: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def make_engine(model_dir: str, **kw) -> Engine:
    return Engine(EngineConfig(model_path=model_dir, **kw))


def greedy(max_new_tokens: int = 16, **kw) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, **kw)


async def collect(engine: Engine, req: EngineRequest):
    """Run one request to the end; returns (final output, number of updates)."""
    last, n = None, 0
    async for out in engine.generate(req):
        last, n = out, n + 1
    return last, n


async def run_all(engine: Engine, reqs: list[EngineRequest]):
    return [o for o, _ in await asyncio.gather(*(collect(engine, r) for r in reqs))]


def shutdown(engine: Engine) -> None:
    asyncio.run(engine.shutdown())
