"""Server-sent events as SGLang and OpenAI clients read them: `data: {json}` events, then
`data: [DONE]`. Headers go out with the first event, so a request refused before producing anything
(queue full, invalid) still gets a plain HTTP error, and headers can describe the first output."""
from __future__ import annotations

import json
from contextlib import aclosing
from typing import AsyncIterator, Callable

from aiohttp import web

from radix_runtime.server.errors import APIError, sse_error

try:  # aiohttp >= 3.10 raises its own subclass
    from aiohttp import ClientConnectionResetError as _Gone
except ImportError:  # pragma: no cover
    _Gone = ConnectionResetError


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


async def sse_response(request: web.Request, events: AsyncIterator[dict],
                       headers: Callable[[], dict[str, str]] = dict) -> web.StreamResponse:
    async with aclosing(events) as it:
        first = await anext(it, None)  # APIError here becomes an ordinary error response
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache", **headers()})
        await resp.prepare(request)
        try:
            if first is not None:
                await resp.write(_event(first))
            async for payload in it:
                await resp.write(_event(payload))
        except APIError as e:
            await resp.write(sse_error(e.message, e.status))
        except (_Gone, ConnectionResetError):
            return resp  # the client left; leaving the `async with` aborts its requests
        await resp.write(b"data: [DONE]\n\n")
    return resp
