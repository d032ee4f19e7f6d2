"""Admin routes: /model_info (+ /get_model_info), /server_info (+ /get_server_info), /v1/loads
(+ /get_load), /flush_cache, /version, /metrics.

A router (SMG) reads /model_info (falling back to /get_model_info), /server_info and /v1/loads; the
load fields mean what SGLang's mean: KV held only by evictable radix-cache entries is not "used"."""
from __future__ import annotations

import dataclasses
import time

from aiohttp import web

from radix_runtime.server.errors import APIError
from radix_runtime.server.http import state_of
from radix_runtime.server.metrics import CONTENT_TYPE
from radix_runtime.version import __version__


async def model_info(request: web.Request) -> web.Response:
    state = state_of(request)
    engine = state.require_engine()
    return web.json_response({
        "model_path": state.config.model_path,  # SGLang's frontend picks templates by it
        "tokenizer_path": state.config.tokenizer_path or state.config.model_path,
        "served_model_name": state.served_model_name, "is_generation": engine.is_generation,
        "preferred_sampling_params": None, "weight_version": "default",
        "context_length": engine.context_length,
    })


async def server_info(request: web.Request) -> web.Response:
    state = state_of(request)
    flags = {**dataclasses.asdict(state.config), **dataclasses.asdict(state.server)}
    del flags["api_key"]  # never echo secrets
    stats = state.stats()
    return web.json_response({
        **flags, "version": __version__, "phase": state.phase,
        "engine_config": dataclasses.asdict(state.config),
        "chat_template": state.chat_template.origin if state.chat_template else None,
        "internal_states": [dataclasses.asdict(stats)] if stats else [],
        "hit_rate_window": {"rate": state.metrics.hit_window.rate,
                            "prompt_tokens": state.metrics.hit_window.prompt_tokens},
        "conversations": len(state.conversations),
    })


def load_snapshot(state) -> dict:
    """One dp rank's entry of SGLang's /v1/loads `loads` list."""
    s = state.stats()
    total = s.total_kv_tokens if s else 0
    used = s.used_kv_tokens if s else 0
    waiting = s.num_waiting_reqs if s else 0
    return {
        "dp_rank": 0, "num_running_reqs": s.num_running_reqs if s else 0,
        "num_waiting_reqs": waiting, "num_waiting_uncached_tokens": 0,
        "num_used_tokens": used, "num_total_tokens": used, "max_total_num_tokens": total,
        "max_running_requests": state.config.max_running_requests,
        "token_usage": round(used / total, 4) if total else 0.0, "gen_throughput": 0.0,
        "cache_hit_rate": round(state.metrics.hit_window.rate, 4), "utilization": 0.0,
    }


async def loads(request: web.Request) -> web.Response:
    state = state_of(request)
    return web.json_response({
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": __version__,
        "loads": [load_snapshot(state)],
    })


async def get_load(request: web.Request) -> web.Response:
    """SGLang's older /get_load: one entry per dp rank."""
    snap = load_snapshot(state_of(request))
    return web.json_response([{"dp_rank": 0,
                               "num_reqs": snap["num_running_reqs"] + snap["num_waiting_reqs"],
                               "num_waiting_reqs": snap["num_waiting_reqs"],
                               "num_tokens": snap["num_used_tokens"]}])


async def flush_cache(request: web.Request) -> web.Response:
    engine = state_of(request).require_engine()
    if not engine.flush_cache():
        raise APIError(400, "cache not flushed: requests are running or waiting; retry when idle")
    return web.json_response({"success": True, "message": "Cache flushed."})


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": __version__})


async def metrics(request: web.Request) -> web.Response:
    body = state_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/model_info", model_info)
    app.router.add_get("/get_model_info", model_info)
    app.router.add_get("/v1/loads", loads)
    app.router.add_get("/get_load", get_load)
    app.router.add_get("/server_info", server_info)
    app.router.add_get("/get_server_info", server_info)
    app.router.add_get("/flush_cache", flush_cache)
    app.router.add_post("/flush_cache", flush_cache)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
