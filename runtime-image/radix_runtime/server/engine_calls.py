"""Runs one EngineRequest for a route: errors to HTTP statuses, metrics, in-flight tracking and
abort on early exit (client gone, handler cancelled)."""
from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from typing import AsyncIterator

from radix_runtime.core.errors import InvalidRequestError, QueueFullError
from radix_runtime.core.request import EngineOutput, EngineRequest
from radix_runtime.server.errors import APIError, bad_request
from radix_runtime.server.state import ServerState


async def run(state: ServerState, req: EngineRequest, arrival: float | None = None,
              ttft: dict[str, float] | None = None, *, counted: bool = True) -> AsyncIterator[EngineOutput]:
    """Yield the engine's outputs for `req` until the finished one.

    Raises APIError (503 queue full, 400 invalid) before the first output. Whoever stops iterating
    early must close this generator (use `contextlib.aclosing`); closing aborts the request so its
    KV is released. `ttft`, when given, receives the request's time to first output by rid.
    `counted`: observed in the request metrics (latency histograms, token counters); the probes'
    /health_generate is not, or an idle server would report a request every probe period.
    """
    engine = state.require_engine()
    arrival = time.monotonic() if arrival is None else arrival
    state.enter(req.rid)
    try:
        finished = False
        async with aclosing(engine.generate(req)) as outputs:
            first = True
            last_time, last_tokens = arrival, 0
            try:
                async for out in outputs:
                    now = time.monotonic()
                    if first:
                        first = False
                        elapsed = now - arrival
                        if counted:
                            state.metrics.observe_prefill(out.prompt_tokens, out.cached_tokens, elapsed)
                        if ttft is not None:
                            ttft[req.rid] = elapsed
                        last_time, last_tokens = now, out.completion_tokens
                    elif out.completion_tokens > last_tokens:  # gaps after the first token
                        if counted:
                            state.metrics.observe_tokens(now - last_time, out.completion_tokens - last_tokens)
                        last_time, last_tokens = now, out.completion_tokens
                    if out.finished:
                        finished = True
                        if counted:
                            state.metrics.observe_finish(time.monotonic() - arrival)
                    yield out
                    if finished:
                        return
            except QueueFullError as e:
                raise APIError(503, f"too many requests waiting: {e}" if str(e) else
                               "too many requests waiting", retry_after=1) from e
            except InvalidRequestError as e:
                raise bad_request(e.message, e.field) from e
    finally:
        # Leaving `aclosing` above closed the engine's iterator, which aborts an unfinished request.
        state.leave(req.rid)


async def run_to_end(state: ServerState, req: EngineRequest, arrival: float | None = None,
                     ttft: dict[str, float] | None = None, *, counted: bool = True) -> EngineOutput:
    """The finished output of `req`."""
    req.stream = False  # the updates before the last would go unread: the engine skips most
    last = None
    async with aclosing(run(state, req, arrival, ttft, counted=counted)) as outputs:
        async for out in outputs:
            last = out
    if last is None:
        raise APIError(500, f"engine returned no output for {req.rid}")
    return last


async def run_all(state: ServerState, reqs: list[EngineRequest], arrival: float | None = None,
                  ttft: dict[str, float] | None = None) -> list[EngineOutput]:
    """Run several requests concurrently; if one fails the others are cancelled (and aborted)."""
    tasks = [asyncio.ensure_future(run_to_end(state, r, arrival, ttft)) for r in reqs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_merged(state: ServerState, reqs: list[EngineRequest],
                     arrival: float | None = None) -> AsyncIterator[tuple[int, EngineOutput]]:
    """Outputs of several concurrent requests as (index in reqs, output), in arrival order."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, req: EngineRequest) -> None:
        try:
            async with aclosing(run(state, req, arrival)) as outputs:
                async for out in outputs:
                    await queue.put((i, out, None))
            await queue.put((i, None, None))
        except Exception as e:  # handed to the consumer, which re-raises it
            await queue.put((i, None, e))

    tasks = [asyncio.ensure_future(pump(i, r)) for i, r in enumerate(reqs)]
    try:
        pending = len(tasks)
        while pending:
            i, out, err = await queue.get()
            if err is not None:
                raise err
            if out is None:
                pending -= 1
                continue
            yield i, out
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
