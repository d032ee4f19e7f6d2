"""OpenAI-compatible routes: /v1/completions, /v1/chat/completions, /v1/embeddings, /v1/models.

Extras as SGLang serves them: choices carry `matched_stop`, usage carries
`prompt_tokens_details.cached_tokens`; non-streaming answers also carry Olla's SGLang docs' `metrics`.
"""
from __future__ import annotations

import base64
import json
import struct
import time
import uuid

from aiohttp import web

from radix_runtime.chat_template import ChatTemplateError
from radix_runtime.core.request import EngineOutput, EngineRequest, GrammarSpec, SamplingParams
from radix_runtime.server import engine_calls, schemas, tool_calls, vision
from radix_runtime.server.errors import APIError, bad_request
from radix_runtime.server.http import cache_headers, json_response, parse_body, state_of
from radix_runtime.server.requests import check_ids, encode, engine_requests, new_rid
from radix_runtime.server.sse import sse_response
from radix_runtime.server.state import ServerState

# ----------------------------------------------------------------------------- pure formatting


def finish(out: EngineOutput) -> tuple[str | None, int | str | None]:
    """OpenAI finish_reason and SGLang's matched_stop."""
    fr = out.finish_reason
    if not fr:
        return None, None
    return fr["type"], fr.get("matched") if fr["type"] == "stop" else None


def usage(outs: list[EngineOutput], n: int) -> dict:
    # As upstream: each prompt counted once (n samples share it); cached summed over samples.
    prompt = sum(o.prompt_tokens for o in outs[::n])
    completion = sum(o.completion_tokens for o in outs)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(o.cached_tokens for o in outs)}}


def olla_metrics(outs: list[EngineOutput], ttft: dict[str, float], elapsed: float) -> dict:
    prompt = sum(o.prompt_tokens for o in outs)
    first = min((ttft[o.rid] for o in outs if o.rid in ttft), default=elapsed)
    return {"time_to_first_token_ms": round(first * 1000, 3),
            "generation_time_ms": round(elapsed * 1000, 3),
            "radix_cache_hit_rate": sum(o.cached_tokens for o in outs) / prompt if prompt else 0.0}


def completion_logprobs(out: EngineOutput, tokenizer, start: int = 0) -> dict:
    """Legacy completions shape, for output tokens from index `start` on."""
    pairs = (out.output_token_logprobs or [])[start:]
    tops = (out.output_top_logprobs or [])[start:]
    tokens = [tokenizer.decode([t]) for _, t in pairs]
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append(pos)
        pos += len(tok)
    return {"tokens": tokens, "token_logprobs": [lp for lp, _ in pairs],
            "top_logprobs": [{tokenizer.decode([t]): lp for lp, t in top} for top in tops]
            if out.output_top_logprobs is not None else None,
            "text_offset": offsets}


def chat_logprobs(out: EngineOutput, tokenizer, start: int = 0) -> dict:
    def entry(lp, tid):
        tok = tokenizer.decode([tid])
        return {"token": tok, "logprob": lp, "bytes": list(tok.encode())}

    pairs = (out.output_token_logprobs or [])[start:]
    tops = (out.output_top_logprobs or [])[start:]
    content = []
    for k, (lp, tid) in enumerate(pairs):
        e = entry(lp, tid)
        e["top_logprobs"] = [entry(*p) for p in tops[k]] if k < len(tops) else []
        content.append(e)
    return {"content": content}


class Deltas:
    """Turns cumulative texts into the deltas OpenAI streams carry, per choice index."""

    def __init__(self):
        self._sent: dict[int, str] = {}

    def next(self, index: int, text: str) -> str:
        sent = self._sent.get(index, "")
        if not text.startswith(sent):  # the engine revised text (stop trim): send nothing back
            return ""
        self._sent[index] = text
        return text[len(sent):]


# ----------------------------------------------------------------------------- shared running


async def _run(request: web.Request, state: ServerState, reqs: list[EngineRequest], n: int,
               stream: bool, include_usage: bool, build, chunk, envelope: dict):
    """Non-streaming: `build(outs, ttft, elapsed)` makes the body. Streaming: `chunk(index, out)`
    yields the chunks for one output; a usage chunk (in `envelope`) ends the stream if asked."""
    arrival = time.monotonic()
    if not stream:
        ttft: dict[str, float] = {}
        outs = await engine_calls.run_all(state, reqs, arrival, ttft)
        return json_response(build(outs, ttft, time.monotonic() - arrival), outs)

    firsts: dict[int, EngineOutput] = {}
    finals: dict[int, EngineOutput] = {}

    async def events():
        async for i, out in engine_calls.run_merged(state, reqs, arrival):
            firsts.setdefault(i, out)
            if out.finished:
                finals[i] = out
            for c in chunk(i, out):
                yield c
        if include_usage:
            outs = [finals[i] for i in sorted(finals)]
            yield {**envelope, "choices": [], "usage": usage(outs, n)}

    return await sse_response(request, events(), lambda: cache_headers(list(firsts.values())))


def _envelope(kind: str, rid: str, model: str, created: int) -> dict:
    return {"id": rid, "object": kind, "created": created, "model": model}


# ----------------------------------------------------------------------------- output constraints


def grammar(req: schemas._OpenAISampling, forced: GrammarSpec | None = None) -> GrammarSpec | None:
    """The one constraint on the output: SGLang's regex / json_schema / ebnf extras, OpenAI's
    response_format, or a forced tool call; a 400 naming the second one given."""
    specs = [GrammarSpec(kind, getattr(req, kind), kind) for kind in ("json_schema", "regex", "ebnf")
             if getattr(req, kind) is not None]
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        specs.append(GrammarSpec("json_object", "", "response_format"))
    elif rf is not None and rf.type == "json_schema":
        schema = rf.json_schema.schema_
        specs.append(GrammarSpec("json_schema", json.dumps(schema, sort_keys=True),
                                 "response_format.json_schema.schema"))
    if forced is not None:
        specs.append(forced)
    if len(specs) > 1:
        raise bad_request(f"only one output constraint per request (got {specs[0].field} "
                          f"and {specs[1].field})", specs[1].field)
    return specs[0] if specs else None


def check_tools(req: schemas.ChatCompletionRequest) -> GrammarSpec | None:
    """400s for tools and tool_choice that do not fit together; the forced call's grammar."""
    tools, choice = req.tools or [], req.tool_choice
    for i, t in enumerate(tools):
        if t.function.parameters is not None:
            try:
                tool_calls.check_schema(t.function.parameters, f"tools.{i}.function.parameters")
            except tool_calls.SchemaError as e:
                raise bad_request(e.message, e.field) from None
    if choice == "required" and not tools:
        raise bad_request("'required' needs tools", "tool_choice")
    if isinstance(choice, schemas.NamedToolChoice):
        names = [t.function.name for t in tools]
        if choice.function.name not in names:
            raise bad_request(f"names {choice.function.name!r}, which is not in tools", "tool_choice")
        field = f"tools.{names.index(choice.function.name)}.function.parameters"
    else:
        field = "tools"
    schema = tool_calls.forced_schema(tools, choice, req.parallel_tool_calls)
    return None if schema is None else GrammarSpec("json_schema", json.dumps(schema, sort_keys=True), field)


# ----------------------------------------------------------------------------- completions


def _prompts(state: ServerState, prompt) -> list[list[int]]:
    tokenizer = state.require_engine().tokenizer
    if isinstance(prompt, str):
        return [encode(tokenizer, prompt)]
    if not prompt:
        raise bad_request("the prompt list is empty", "prompt")
    if isinstance(prompt[0], str):
        return [encode(tokenizer, p) for p in prompt]
    if isinstance(prompt[0], int):
        return [prompt]
    return prompt


async def completions(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    req = await parse_body(request, schemas.CompletionRequest)
    tokenizer = state.require_engine().tokenizer
    prompts = _prompts(state, req.prompt)
    sp = req.sampling(req.max_tokens)
    spec = grammar(req)
    want_logprobs = req.logprobs is not None
    reqs: list[EngineRequest] = []
    for i, ids in enumerate(prompts):
        reqs += engine_requests(ids, sp, state.limits(),
                                rid=f"{req.rid}-{i}" if req.rid and len(prompts) > 1 else req.rid,
                                param="prompt", return_logprob=want_logprobs,
                                top_logprobs_num=req.logprobs or 0, grammar=spec)
    rid, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), state.served_model_name
    echo = [tokenizer.decode(ids) if req.echo else "" for ids in prompts]
    n = req.n

    def choice(i: int, out: EngineOutput, text: str, start: int = 0) -> dict:
        reason, matched = finish(out) if out.finished else (None, None)
        return {"index": i, "text": text,
                "logprobs": completion_logprobs(out, tokenizer, start) if want_logprobs else None,
                "finish_reason": reason, "matched_stop": matched}

    def build(outs, ttft, elapsed):
        choices = [choice(i, o, echo[i // n] + o.text) for i, o in enumerate(outs)]
        return {**_envelope("text_completion", rid, model, created), "choices": choices,
                "usage": usage(outs, n), "metrics": olla_metrics(outs, ttft, elapsed)}

    deltas = Deltas()
    sent_tokens: dict[int, int] = {}

    def chunk(i: int, out: EngineOutput):
        first = i not in sent_tokens
        text = (echo[i // n] if first else "") + deltas.next(i, out.text)
        start = sent_tokens.get(i, 0)
        sent_tokens[i] = len(out.output_token_logprobs or [])
        if text or out.finished or first:
            yield {**_envelope("text_completion", rid, model, created),
                   "choices": [choice(i, out, text, start)]}

    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return await _run(request, state, reqs, n, req.stream, include_usage, build, chunk,
                      _envelope("text_completion", rid, model, created))


# ----------------------------------------------------------------------------- chat


def render_chat(state: ServerState, req: schemas.ChatCompletionRequest) -> list[int]:
    engine = state.require_engine()
    if state.chat_template is None:
        raise bad_request("the model has no chat template; start the server with "
                          "--chat-template", "messages")
    if req.continue_final_message and req.messages[-1].role != "assistant":
        raise bad_request("continue_final_message needs a final assistant message", "messages")
    token, parts = vision.image_token(state), state.chat_template.takes_content_parts
    try:
        text = state.chat_template.render(
            [m.as_template_dict(token, parts) for m in req.messages],
            add_generation_prompt=req.add_generation_prompt and not req.continue_final_message,
            tools=req.template_tools(), continue_final_message=req.continue_final_message,
            **(req.chat_template_kwargs or {}))
    except ChatTemplateError as e:
        raise bad_request(str(e), "messages") from e
    # The template writes the special tokens (BOS) itself, as HF's apply_chat_template.
    return encode(engine.tokenizer, text, add_special_tokens=False)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    req = await parse_body(request, schemas.ChatCompletionRequest)
    tokenizer = state.require_engine().tokenizer
    forced = check_tools(req)
    spec = grammar(req, forced)
    urls = [u for m in req.messages for u in m.image_urls()]
    pixels = await vision.load(state, urls, "messages.image_url")  # before rendering: 400 first
    ids, images = vision.attach(state, render_chat(state, req), pixels, "messages")
    top = req.top_logprobs or 0
    if top and not req.logprobs:
        raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
    reqs = engine_requests(ids, req.sampling(req.max_new_tokens()), state.limits(), rid=req.rid,
                           param="messages", return_logprob=req.logprobs, top_logprobs_num=top,
                           grammar=spec, images=images)
    rid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), state.served_model_name
    n = req.n
    use_tools = bool(req.tools) and req.tool_choice != "none"

    def tool_stream() -> tool_calls.ToolStream:
        return tool_calls.new_stream(state.tool_call_parser(), req.tool_choice, req.tools)

    def build(outs, ttft, elapsed):
        choices = []
        for i, o in enumerate(outs):
            reason, matched = finish(o)
            content, calls = tool_stream().parse(o.text) if use_tools else (o.text, [])
            if calls:
                reason = "tool_calls"
            choices.append({"index": i,
                            "message": {"role": "assistant", "content": content or None if calls
                                        else content,
                                        "tool_calls": [c.openai() for c in calls] or None},
                            "logprobs": chat_logprobs(o, tokenizer) if req.logprobs else None,
                            "finish_reason": reason, "matched_stop": matched})
        return {**_envelope("chat.completion", rid, model, created), "choices": choices,
                "usage": usage(outs, n), "metrics": olla_metrics(outs, ttft, elapsed)}

    deltas = Deltas()
    sent_tokens: dict[int, int] = {}
    streams: dict[int, tool_calls.ToolStream] = {}
    n_calls: dict[int, int] = {}

    def call_deltas(env: dict, i: int, calls: list[tool_calls.ToolCall]):
        for c in calls:  # one delta per call: its id, name and whole arguments
            k = n_calls[i] = n_calls.get(i, -1) + 1
            yield {**env, "choices": [{"index": i, "delta": {"tool_calls": [c.openai(k)]},
                                       "logprobs": None, "finish_reason": None}]}

    def chunk(i: int, out: EngineOutput):
        env = _envelope("chat.completion.chunk", rid, model, created)
        if i not in sent_tokens:
            sent_tokens[i] = 0
            if use_tools:
                streams[i] = tool_stream()
            yield {**env, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                       "logprobs": None, "finish_reason": None}]}
        text, calls = deltas.next(i, out.text), []
        if i in streams:
            text, calls = streams[i].feed(text)
            if out.finished:
                rest, more = streams[i].finish()
                text, calls = text + rest, calls + more
        start = sent_tokens[i]
        sent_tokens[i] = len(out.output_token_logprobs or [])
        logprobs = chat_logprobs(out, tokenizer, start) if req.logprobs else None
        if text or (logprobs and logprobs["content"]):
            yield {**env, "choices": [{"index": i, "delta": {"content": text},
                                       "logprobs": logprobs, "finish_reason": None}]}
        yield from call_deltas(env, i, calls)
        if out.finished:
            reason, matched = finish(out)
            if i in n_calls:
                reason = "tool_calls"
            yield {**env, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                       "finish_reason": reason, "matched_stop": matched}]}

    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return await _run(request, state, reqs, n, req.stream, include_usage, build, chunk,
                      _envelope("chat.completion.chunk", rid, model, created))


# ----------------------------------------------------------------------------- embeddings


def encode_embedding(vec: list[float], fmt: str):
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
    return vec


async def embeddings(request: web.Request) -> web.Response:
    state = state_of(request)
    req = await parse_body(request, schemas.EmbeddingRequest)
    limits = state.limits()
    prompts = _prompts(state, req.input)
    reqs = [EngineRequest(rid=new_rid(), input_ids=check_ids(list(ids), limits, "input"),
                          sampling=SamplingParams(max_new_tokens=0), embedding=True)
            for ids in prompts]
    outs = await engine_calls.run_all(state, reqs)
    if any(o.embedding is None for o in outs):
        raise APIError(500, "the engine returned no embedding")
    prompt = sum(o.prompt_tokens for o in outs)
    return json_response({
        "object": "list", "model": state.served_model_name,
        "data": [{"object": "embedding", "index": i,
                  "embedding": encode_embedding(o.embedding, req.encoding_format)}
                 for i, o in enumerate(outs)],
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }, outs)


# ----------------------------------------------------------------------------- models


def model_card(state: ServerState) -> dict:
    engine = state.engine
    return {"id": state.served_model_name, "object": "model", "created": int(state.started_at),
            "owned_by": "sglang", "root": state.config.model_path, "parent": None,
            "max_model_len": engine.context_length if engine else None, "permission": [],
            "speculative_decoding": False}


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [model_card(state_of(request))]})


async def get_model(request: web.Request) -> web.Response:
    state = state_of(request)
    model_id = request.match_info["model_id"]
    if model_id != state.served_model_name:
        raise APIError(404, f"The model {model_id!r} does not exist", param="model")
    return web.json_response(model_card(state))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    # Olla's SGLang docs' vision route: the same handler (image_url parts: docs/vision.md).
    app.router.add_post("/v1/chat/completions/vision", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
