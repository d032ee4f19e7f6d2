"""The aiohttp application and the server's life: serve HTTP at once, load the engine in the
background, drain on SIGTERM."""
from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
import weakref
from typing import Callable

from aiohttp import web

from radix_runtime.chat_template import ChatTemplateError, load_chat_template
from radix_runtime.core.config import EngineConfig, ServerConfig
from radix_runtime.core.protocol import Engine
from radix_runtime.hf_files import model_config
from radix_runtime.images import vision_spec
from radix_runtime.server import admin, health, native, openai
from radix_runtime.server.errors import APIError
from radix_runtime.server.state import DRAINING, FAILED, READY, ServerState

log = logging.getLogger("radix_runtime.server")

# Probes and scrapers carry no credentials, and must keep working while draining.
OPEN_PATHS = frozenset({"/health", "/healthz", "/health_generate", "/metrics"})


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except APIError as e:
        return e.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return APIError(e.status, f"{e.reason}: {request.method} {request.path}").response()
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return APIError(500, "internal server error; see the server log").response()


@web.middleware
async def gate_middleware(request: web.Request, handler):
    """API key and drain checks, ahead of every route but the open ones."""
    if request.path in OPEN_PATHS:
        return await handler(request)
    state: ServerState = request.app["state"]
    key = state.server.api_key
    if key:
        auth = request.headers.get("Authorization", "")
        given = auth[7:] if auth.startswith("Bearer ") else request.headers.get("X-API-Key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise APIError(401, "invalid or missing API key (send `Authorization: Bearer KEY`)")
    kept_alive: weakref.WeakSet = request.app["kept_alive"]
    if state.phase == DRAINING and request.transport not in kept_alive:
        raise APIError(503, "server is shutting down", retry_after=5)
    # A connection that served a request before the drain began is a client's keep-alive
    # connection: Kubernetes has already taken this pod out of its Service, so such a client is
    # the only one still sending here. Serve it and close the connection after the answer, so its
    # next request reconnects through the Service to a pod that is not leaving (a 503 or a reset
    # here is what a rolling update would show its users).
    kept_alive.add(request.transport)
    resp = await handler(request)
    if state.phase == DRAINING:
        resp.force_close()
    return resp


def create_app(state: ServerState) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, gate_middleware],
                          client_max_size=64 << 20)
    app["state"] = state
    app["kept_alive"] = weakref.WeakSet()  # connections that served a request (see gate_middleware)
    for module in (native, openai, health, admin):
        module.add_routes(app)
    return app


def default_engine_factory(config: EngineConfig) -> Engine:
    from radix_runtime.engine.radix_engine import RadixEngine  # torch: only once serving

    return RadixEngine(config)


async def load(state: ServerState, factory: Callable[[EngineConfig], Engine]) -> None:
    """Load the model, then flip /health to 200. Failures are logged and reported by /health."""
    config = state.config
    t0 = time.monotonic()
    try:
        tok_dir = config.tokenizer_path or config.model_path
        state.chat_template = load_chat_template(tok_dir, state.server.chat_template)
        state.load_message = f"loading weights from {config.model_path}"
        log.info("Loading model from %s ...", config.model_path)
        state.engine = await asyncio.to_thread(factory, config)
        state.vocab_size = max(state.engine.vocab_size, state.engine.tokenizer.vocab_size)
        state.vision = vision_spec(config.model_path, model_config(config.model_path))
    except (Exception, ChatTemplateError) as e:
        state.phase, state.load_error = FAILED, f"{type(e).__name__}: {e}"
        log.exception("model failed to load")
        return
    if state.phase != DRAINING:
        state.phase = READY
    state.load_message = "loaded"
    log.info("Model loaded in %.1fs (context length %d, chat template: %s)",
             time.monotonic() - t0, state.engine.context_length,
             state.chat_template.origin if state.chat_template else "none")
    log.info("The server is fired up and ready to roll!")


async def serve(server: ServerConfig, config: EngineConfig,
                factory: Callable[[EngineConfig], Engine] = default_engine_factory) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 after a clean drain)."""
    state = ServerState(server, config)
    # handler_cancellation: a client that goes away cancels its handler, which aborts its
    # requests in the engine (non-streaming ones too).
    access_log = logging.getLogger("radix_runtime.access") if server.log_requests else None
    runner = web.AppRunner(create_app(state), handler_cancellation=True, access_log=access_log,
                           shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, server.host, server.port).start()
    log.info("HTTP server listening on http://%s:%d (model loading in the background)",
             server.host, server.port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loader = asyncio.create_task(load(state, factory))
    loader.add_done_callback(lambda _: state.phase == FAILED and stop.set())
    await stop.wait()

    code = 1 if state.phase == FAILED else 0
    if state.phase != FAILED:
        state.phase = DRAINING
    log.info("Shutting down: draining %d in-flight request(s) (up to %gs; signal again to stop "
             "now)", state.inflight, server.shutdown_timeout)
    force = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, force.set)
    deadline = loop.time() + server.shutdown_timeout
    while not force.is_set():
        waits = [asyncio.create_task(state.idle.wait()), asyncio.create_task(force.wait())]
        await asyncio.wait(waits, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        # a kept-alive client may send once more before it sees its connection close
        await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
        if not state.inflight or loop.time() >= deadline:
            break
    if state.inflight:
        log.warning("aborting %d request(s) still running", state.inflight)
    await runner.cleanup()  # cancels what still runs, which aborts it in the engine
    if not loader.done():
        loader.cancel()
    if state.engine is not None:
        await state.engine.shutdown()
    log.info("Shutdown complete")
    return code
