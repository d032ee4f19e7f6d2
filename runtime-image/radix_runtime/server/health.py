"""/health (cheap, for liveness) and /health_generate (a real one-token generation).

Both answer 503 while the model loads, after it failed to load, while draining, and when the
scheduler has work but has not stepped for --watchdog-timeout seconds (it is stuck).
"""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from radix_runtime.engine.protocol import EngineRequest, SamplingParams
from radix_runtime.server import runner
from radix_runtime.server.errors import APIError
from radix_runtime.server.http import state_of
from radix_runtime.server.requests import new_rid
from radix_runtime.server.state import DRAINING, FAILED, LOADING, ServerState


def health_body(state: ServerState, now: float | None = None) -> tuple[int, dict]:
    """The seed docs' /health JSON and its status code. Pure given the state."""
    if state.phase == LOADING:
        return 503, {"status": "loading", "model_loaded": False, "radix_cache_ready": False,
                     "reason": f"model not loaded ({state.load_message})"}
    if state.phase == FAILED:
        return 503, {"status": "unhealthy", "model_loaded": False, "radix_cache_ready": False,
                     "reason": f"model failed to load: {state.load_error}"}
    s = state.stats()
    body = {"status": "healthy", "model_loaded": True,
            "radix_cache_ready": not state.config.disable_radix_cache,
            "radix_cache_usage_perc": s.cache_usage, "num_requests_running": s.num_running_reqs,
            "num_requests_waiting": s.num_waiting_reqs, "speculative_decoding_enabled": False}
    if state.phase == DRAINING:
        return 503, {**body, "status": "draining", "reason": "server is shutting down"}
    stalled = (time.monotonic() if now is None else now) - s.last_step_time
    busy = s.num_running_reqs + s.num_waiting_reqs > 0
    if busy and stalled > state.args.watchdog_timeout:
        return 503, {**body, "status": "unhealthy",
                     "reason": f"scheduler made no progress for {stalled:.0f}s with work queued"}
    return 200, body


async def health(request: web.Request) -> web.Response:
    status, body = health_body(state_of(request))
    return web.json_response(body, status=status)


async def health_generate(request: web.Request) -> web.Response:
    state = state_of(request)
    status, body = health_body(state)
    if status != 200:
        return web.json_response(body, status=status)
    engine = state.engine
    bos = getattr(engine.tokenizer, "bos_token_id", None)
    req = EngineRequest(rid=f"health-{new_rid()}", input_ids=[bos if bos is not None else 0],
                        sampling=SamplingParams(max_new_tokens=1, temperature=0.0))
    timeout = state.args.health_generate_timeout
    started = time.monotonic()
    try:
        out = await asyncio.wait_for(runner.run_to_end(state, req), timeout)
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
