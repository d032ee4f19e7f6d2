"""Small helpers every route module uses: body parsing and the cache headers."""
from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from radix_runtime.core.request import EngineOutput
from radix_runtime.server.errors import bad_request, from_validation_error
from radix_runtime.server.state import ServerState

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    if not raw.strip():
        raise bad_request("request body is empty; send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise from_validation_error(e) from None


def state_of(request: web.Request) -> ServerState:
    return request.app["state"]


def cache_headers(outputs: list[EngineOutput]) -> dict[str, str]:
    """Olla's SGLang docs' X-SGLang-Cache-Hit (was any prompt served from the radix cache) plus the
    number of cached prompt tokens."""
    cached = sum(o.cached_tokens for o in outputs)
    return {"X-SGLang-Cache-Hit": "true" if cached > 0 else "false",
            "X-SGLang-Cached-Tokens": str(cached)}


def json_response(body, outputs: list[EngineOutput]) -> web.Response:
    return web.json_response(body, headers=cache_headers(outputs),
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))
