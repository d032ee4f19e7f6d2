"""SGLang-native routes: /generate (POST/PUT), /batch and /extend.

Response items carry SGLang's `text`, `output_ids` and `meta_info`, plus the `meta` block of the
Olla proxy's SGLang docs (rid, input/output tokens, radix_cache_hit); the names do not clash, so
clients of either read theirs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from radix_runtime.core.request import EngineOutput, EngineRequest
from radix_runtime.server import engine_calls, schemas, vision
from radix_runtime.server.errors import APIError, bad_request
from radix_runtime.server.http import cache_headers, json_response, parse_body, state_of
from radix_runtime.server.requests import encode, engine_requests, new_rid
from radix_runtime.server.sse import sse_response
from radix_runtime.server.state import ServerState


@dataclass
class Item:
    """One engine request and what its response item needs besides the output."""

    req: EngineRequest
    conversation: str  # rid /extend continues
    return_text_in_logprobs: bool = False
    new_tokens: int | None = None  # /extend: tokens this turn added


# ----------------------------------------------------------------------------- pure formatting


def _logprob_entries(pairs, tokenizer, with_text: bool) -> list[list]:
    return [[lp, tid, tokenizer.decode([tid]) if with_text else None] for lp, tid in pairs]


def meta_info(out: EngineOutput, latency: float, tokenizer=None, with_text=False) -> dict:
    info = {"id": out.rid, "finish_reason": out.finish_reason, "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens, "cached_tokens": out.cached_tokens,
            "e2e_latency": round(latency, 6)}
    if out.output_token_logprobs is not None or out.input_token_logprobs is not None:
        info["input_token_logprobs"] = _logprob_entries(out.input_token_logprobs or [],
                                                        tokenizer, with_text)
        info["output_token_logprobs"] = _logprob_entries(out.output_token_logprobs or [],
                                                         tokenizer, with_text)
        if out.output_top_logprobs is not None:
            info["output_top_logprobs"] = [_logprob_entries(top, tokenizer, with_text)
                                           for top in out.output_top_logprobs]
    return info


def olla_meta(out: EngineOutput, item: Item, latency: float) -> dict:
    """Olla's SGLang docs' `meta` block (finish reason as a plain string, times in ms)."""
    fr = out.finish_reason
    meta = {"id": out.rid, "rid": item.conversation, "finish_reason": fr["type"] if fr else None,
            "input_tokens": out.prompt_tokens if item.new_tokens is None else item.new_tokens,
            "output_tokens": out.completion_tokens,
            "completion_time_ms": round(latency * 1000, 3),
            "radix_cache_hit": out.cached_tokens > 0, "cached_tokens": out.cached_tokens}
    if item.new_tokens is not None:
        meta["context_length"] = out.prompt_tokens + out.completion_tokens
    return meta


def result(out: EngineOutput, item: Item, latency: float, tokenizer) -> dict:
    return {"text": out.text, "output_ids": list(out.output_ids),
            "meta_info": meta_info(out, latency, tokenizer, item.return_text_in_logprobs),
            "meta": olla_meta(out, item, latency)}


# ----------------------------------------------------------------------------- request -> items


def _per_item(value, n: int, batched: bool, name: str) -> list:
    if isinstance(value, list):
        if not batched:
            raise bad_request("a list is only allowed with a batch of prompts", name)
        if len(value) != n:
            raise bad_request(f"has {len(value)} entries for {n} prompts", name)
        return value
    return [value] * n


async def generate_items(state: ServerState, req: schemas.GenerateRequest) -> tuple[list[Item], bool]:
    """The engine requests of a /generate body and whether the answer is a list."""
    engine = state.require_engine()
    if req.text is not None:
        batched, param = isinstance(req.text, list), "text"
        prompts = [encode(engine.tokenizer, t) for t in (req.text if batched else [req.text])]
    else:
        batched = bool(req.input_ids) and isinstance(req.input_ids[0], list)
        param = "input_ids"
        prompts = req.input_ids if batched else [req.input_ids]
    if batched and not prompts:
        raise bad_request("the batch is empty", param)
    n = len(prompts)
    fields = {name: _per_item(getattr(req, name), n, batched, name)
              for name in ("sampling_params", "rid", "return_logprob", "top_logprobs_num",
                           "logprob_start_len")}
    sources = vision.sources_of(req.image_data, n, batched)
    items = []
    for i, ids in enumerate(prompts):
        prompt_param = f"{param}.{i}" if batched else param
        pixels = await vision.load(state, sources[i], f"image_data.{i}" if batched else "image_data")
        ids, imgs = vision.attach(state, ids, pixels, prompt_param)
        for r in engine_requests(
                ids, fields["sampling_params"][i], state.limits(), rid=fields["rid"][i],
                param=prompt_param, return_logprob=fields["return_logprob"][i],
                top_logprobs_num=fields["top_logprobs_num"][i],
                logprob_start_len=fields["logprob_start_len"][i], priority=req.priority,
                images=imgs):
            items.append(Item(r, r.rid, req.return_text_in_logprobs))
    rids = [it.req.rid for it in items]
    if len(set(rids)) != len(rids):
        raise bad_request("rids must be unique within a batch (give one per prompt)", "rid")
    many = batched or len(items) > 1
    return items, many


def extend_item(state: ServerState, req: schemas.ExtendRequest) -> Item:
    engine = state.require_engine()
    history = state.conversations.get(req.rid)
    if history is None:
        raise APIError(404, f"rid: no conversation {req.rid!r} (unknown, or expired)", param="rid")
    if state.vision is not None and state.vision.image_token_id in history:
        raise bad_request("a conversation with images cannot be extended (its images are not "
                          "kept); send the whole prompt and its image_data to /generate", "rid")
    added = (encode(engine.tokenizer, req.text, add_special_tokens=False)
             if req.text is not None else list(req.input_ids))
    if req.sampling_params is not None and req.sampling_params.n != 1:
        raise bad_request("n must be 1 for /extend", "sampling_params.n")
    [r] = engine_requests(history + added, req.sampling_params, state.limits(), rid=new_rid(),
                          param="text" if req.text is not None else "input_ids",
                          return_logprob=req.return_logprob,
                          top_logprobs_num=req.top_logprobs_num)
    return Item(r, req.rid, req.return_text_in_logprobs, new_tokens=len(added))


# ----------------------------------------------------------------------------- execution


def _remember(state: ServerState, item: Item, out: EngineOutput) -> None:
    if out.finished and (out.finish_reason or {}).get("type") != "abort":
        state.conversations.put(item.conversation, list(item.req.input_ids) + list(out.output_ids))


async def _answer(request: web.Request, state: ServerState, items: list[Item], many: bool,
                  stream: bool, stream_interval: int | None = None) -> web.StreamResponse:
    arrival = time.monotonic()
    tokenizer = state.engine.tokenizer
    reqs = [it.req for it in items]
    if not stream:
        outs = await engine_calls.run_all(state, reqs, arrival)
        latency = time.monotonic() - arrival
        for it, out in zip(items, outs):
            _remember(state, it, out)
        bodies = [result(o, it, latency, tokenizer) for it, o in zip(items, outs)]
        return json_response(bodies if many else bodies[0], outs)

    firsts: dict[int, EngineOutput] = {}

    async def events():
        sent = [0] * len(items)
        async for i, out in engine_calls.run_merged(state, reqs, arrival):
            firsts.setdefault(i, out)
            _remember(state, items[i], out)
            if stream_interval and not out.finished and \
                    out.completion_tokens - sent[i] < stream_interval:
                continue
            sent[i] = out.completion_tokens
            body = result(out, items[i], time.monotonic() - arrival, tokenizer)
            if many:
                body["index"] = i
            yield body

    return await sse_response(request, events(), lambda: cache_headers(list(firsts.values())))


def _stream_interval(req: schemas.GenerateRequest) -> int | None:
    sp = req.sampling_params
    return sp.stream_interval if isinstance(sp, schemas.SamplingParamsBody) else None


async def generate(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    req = await parse_body(request, schemas.GenerateRequest)
    items, many = await generate_items(state, req)
    return await _answer(request, state, items, many, req.stream, _stream_interval(req))


async def extend(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    req = await parse_body(request, schemas.ExtendRequest)
    item = extend_item(state, req)
    interval = req.sampling_params.stream_interval if req.sampling_params else None
    return await _answer(request, state, [item], False, req.stream, interval)


async def batch(request: web.Request) -> web.Response:
    """Olla's SGLang docs' /batch: every request runs concurrently; one answer for all."""
    state = state_of(request)
    req = await parse_body(request, schemas.BatchRequest)
    arrival = time.monotonic()
    groups = []
    for i, sub in enumerate(req.requests):
        if sub.stream:
            raise bad_request("streaming is not available in /batch", f"requests.{i}.stream")
        groups.append(await generate_items(state, sub))
    flat = [it for items, _ in groups for it in items]
    outs = await engine_calls.run_all(state, [it.req for it in flat], arrival)
    latency = time.monotonic() - arrival
    tokenizer = state.engine.tokenizer
    bodies = []
    for it, out in zip(flat, outs):
        _remember(state, it, out)
        bodies.append(result(out, it, latency, tokenizer))
    responses, k = [], 0
    for items, many in groups:
        part = bodies[k:k + len(items)]
        k += len(items)
        responses.append(part if many else part[0])
    prompt = sum(o.prompt_tokens for o in outs)
    ok = sum(1 for o in outs if (o.finish_reason or {}).get("type") != "abort")
    return json_response({"responses": responses, "batch_meta": {
        "total_requests": len(outs), "successful": ok,
        "total_time_ms": round(latency * 1000, 3),
        "avg_radix_cache_hit_rate": sum(o.cached_tokens for o in outs) / prompt if prompt else 0.0,
    }}, outs)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/generate", generate)
    app.router.add_put("/generate", generate)
    app.router.add_post("/extend", extend)
    app.router.add_post("/batch", batch)
