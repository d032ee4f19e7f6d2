"""Admin routes: /get_model_info, /server_info (+ /get_server_info), /flush_cache, /version,
/metrics."""
from __future__ import annotations

import dataclasses

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
    app.router.add_get("/get_model_info", model_info)
    app.router.add_get("/server_info", server_info)
    app.router.add_get("/get_server_info", server_info)
    app.router.add_get("/flush_cache", flush_cache)
    app.router.add_post("/flush_cache", flush_cache)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
