"""/health (cheap, for liveness) and /health_generate (a real one-token generation).

Both answer 503 while the model loads, after it failed to load, while draining, when the
scheduler has work but has not stepped for --watchdog-timeout seconds (it is stuck), and when a
rank of a tensor/pipeline-parallel group died or hung (the process then exits, see
distributed/heartbeat.py).
"""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from radix_runtime.core.protocol import EngineStats
from radix_runtime.core.request import EngineRequest, SamplingParams
from radix_runtime.server import engine_calls
from radix_runtime.server.errors import APIError
from radix_runtime.server.http import state_of
from radix_runtime.server.requests import new_rid
from radix_runtime.server.state import DRAINING, FAILED, LOADING, ServerState


def health_body(phase: str, stats: EngineStats | None, *, radix_cache: bool,
                watchdog_timeout: float, detail: str = "", now: float,
                speculative: bool = False) -> tuple[int, dict]:
    """Olla's SGLang docs' /health JSON and its status code. `detail`: what loading is doing, or why
    it failed."""
    if phase == LOADING or stats is None:
        return 503, {"status": "loading", "model_loaded": False, "radix_cache_ready": False,
                     "reason": f"model not loaded ({detail})"}
    if phase == FAILED:
        return 503, {"status": "unhealthy", "model_loaded": False, "radix_cache_ready": False,
                     "reason": f"model failed to load: {detail}"}
    body = {"status": "healthy", "model_loaded": True, "radix_cache_ready": radix_cache,
            "radix_cache_usage_perc": stats.cache_usage,
            "num_requests_running": stats.num_running_reqs,
            "num_requests_waiting": stats.num_waiting_reqs, "speculative_decoding_enabled": speculative}
    if stats.broken:
        return 503, {**body, "status": "unhealthy", "reason": stats.broken}
    if phase == DRAINING:
        return 503, {**body, "status": "draining", "reason": "server is shutting down"}
    stalled = now - stats.last_step_time
    busy = stats.num_running_reqs + stats.num_waiting_reqs > 0
    if busy and stalled > watchdog_timeout:
        return 503, {**body, "status": "unhealthy",
                     "reason": f"scheduler made no progress for {stalled:.0f}s with work queued"}
    return 200, body


def state_health(state: ServerState) -> tuple[int, dict]:
    detail = state.load_error if state.phase == FAILED else state.load_message
    return health_body(state.phase, state.stats(), radix_cache=not state.config.disable_radix_cache,
                       watchdog_timeout=state.server.watchdog_timeout, detail=detail or "",
                       now=time.monotonic(),
                       speculative=state.config.speculative_algorithm is not None)


async def health(request: web.Request) -> web.Response:
    status, body = state_health(state_of(request))
    return web.json_response(body, status=status)


async def health_generate(request: web.Request) -> web.Response:
    state = state_of(request)
    status, body = state_health(state)
    if status != 200:
        return web.json_response(body, status=status)
    engine = state.engine
    bos = getattr(engine.tokenizer, "bos_token_id", None)
    req = EngineRequest(rid=f"health-{new_rid()}", input_ids=[bos if bos is not None else 0],
                        sampling=SamplingParams(max_new_tokens=1, temperature=0.0))
    timeout = state.server.health_generate_timeout
    started = time.monotonic()
    try:
        out = await asyncio.wait_for(engine_calls.run_to_end(state, req, counted=False), timeout)
    except asyncio.TimeoutError:
        return web.json_response({**body, "status": "unhealthy",
                                  "reason": f"no token within {timeout:g}s"}, status=503)
    except APIError as e:
        # A full queue means the server is busy, not broken; it still answers.
        if e.status == 503 and state.phase not in (DRAINING, FAILED):
            return web.json_response({**body, "note": e.message})
        return web.json_response({**body, "status": "unhealthy", "reason": e.message},
                                 status=e.status if e.status >= 500 else 503)
    return web.json_response({**body, "generated_tokens": out.completion_tokens,
                              "latency_s": round(time.monotonic() - started, 4)})


def add_routes(app: web.Application) -> None:
    for path in ("/health", "/healthz"):
        app.router.add_get(path, health)
    app.router.add_get("/health_generate", health_generate)
