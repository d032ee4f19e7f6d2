"""Structured outputs through the OpenAI API and the OpenAI SDK: response_format json_schema
(chat and completions, streamed and not) validates for every sample; json_object gives JSON
objects; tool_choice required / named gives calls whose arguments validate, as tool_calls and as
streamed deltas; `auto` parses the Hermes `<tool_call>` format out of the text; tool results go
back through the chat template; the SDK's `parse` helper returns the pydantic model."""
from __future__ import annotations

import json
import re

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.support.structured import REGEX, SCHEMAS, TOOLS, validate, validate_call

MSG = [{"role": "user", "content": "Answer in JSON."}]


def _post(url: str, path: str, body: dict) -> dict:
    r = httpx.post(url + path, json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def _stream(url: str, path: str, body: dict) -> list[dict]:
    with httpx.stream("POST", url + path, json={**body, "stream": True}, timeout=300) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(line[6:]) for line in r.iter_lines()
                if line.startswith("data: ") and line != "data: [DONE]"]


def _fmt(name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_chat_response_format_json_schema(structured_server, name):
    url = structured_server.url
    for temp, n in ((0.0, 1), (1.0, 8)):
        body = {"messages": MSG, "max_tokens": 320, "temperature": temp, "n": n, "response_format": _fmt(name)}
        for choice in _post(url, "/v1/chat/completions", body)["choices"]:
            assert choice["finish_reason"] == "stop"
            validate(choice["message"]["content"], SCHEMAS[name])
    chunks = _stream(url, "/v1/chat/completions", {**body, "n": 3})
    for i in range(3):
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c["choices"] and c["choices"][0]["index"] == i)
        validate(text, SCHEMAS[name])


def test_completions_response_format_regex_and_json_object(structured_server):
    url = structured_server.url
    body = {"prompt": "Order:", "max_tokens": 320, "temperature": 1.0, "n": 8,
            "response_format": _fmt("order")}
    for c in _post(url, "/v1/completions", body)["choices"]:
        validate(c["text"], SCHEMAS["order"])
    chunks = _stream(url, "/v1/completions", {**body, "n": 1})
    validate("".join(c["choices"][0]["text"] for c in chunks if c["choices"]), SCHEMAS["order"])
    body = {"prompt": "Code:", "max_tokens": 40, "temperature": 1.0, "n": 8, "regex": REGEX}
    assert all(re.fullmatch(REGEX, c["text"]) for c in _post(url, "/v1/completions", body)["choices"])
    body = {"messages": MSG, "max_tokens": 400, "temperature": 0.0,
            "response_format": {"type": "json_object"}}
    choice = _post(url, "/v1/chat/completions", body)["choices"][0]
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    else:  # a random model may write a long object: it is at least an object's prefix
        assert choice["message"]["content"].startswith("{")


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_stock"}}])
def test_forced_tool_calls_validate(structured_server, choice):
    url = structured_server.url
    body = {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS, "tool_choice": choice,
            "max_tokens": 600, "temperature": 1.0}
    seeded = [_post(url, "/v1/chat/completions", {**body, "seed": seed})["choices"][0] for seed in range(8)]
    for c in seeded:
        assert c["finish_reason"] == "tool_calls" and c["message"]["content"] is None
        assert c["message"]["tool_calls"]
        for call in c["message"]["tool_calls"]:
            validate_call(call)
            if choice != "required":
                assert call["function"]["name"] == "get_stock"
    chunks = _stream(url, "/v1/chat/completions", {**body, "seed": 0})
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls and [tc["index"] for tc in calls] == list(range(len(calls)))
    for tc in calls:
        validate_call(tc)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_auto_tool_calls_are_parsed_from_the_hermes_format(structured_server):
    # the extras' regex makes the tiny model write a Hermes call; `auto` must find it
    regex = (r'Sure\. <tool_call>\n\{"name": "get_weather", "arguments": \{"city": "[a-z]{1,8}", '
             r'"unit": "celsius"\}\}\n</tool_call>')
    body = {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS,
            "max_tokens": 120, "temperature": 1.0, "regex": regex}
    c = _post(structured_server.url, "/v1/chat/completions", body)["choices"][0]
    assert c["finish_reason"] == "tool_calls" and c["message"]["content"] == "Sure. "
    [call] = c["message"]["tool_calls"]
    assert validate_call(call)["unit"] == "celsius"
    chunks = _stream(structured_server.url, "/v1/chat/completions", body)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "Sure. "
    [streamed] = [tc for d in deltas for tc in d.get("tool_calls") or []]
    validate_call(streamed)
    none = _post(structured_server.url, "/v1/chat/completions", {**body, "tool_choice": "none"})
    assert none["choices"][0]["message"]["tool_calls"] is None


def test_tool_results_go_through_the_chat_template(structured_server):
    url = structured_server.url
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}
    history = [{"role": "user", "content": "weather?"},
               {"role": "assistant", "content": None, "tool_calls": [call]}]
    base = {"tools": TOOLS, "max_tokens": 4, "temperature": 0}
    short = _post(url, "/v1/chat/completions", {**base, "messages": history})
    full = _post(url, "/v1/chat/completions", {**base, "messages": history + [
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny and 21 degrees"}]})
    assert full["usage"]["prompt_tokens"] > short["usage"]["prompt_tokens"]


@pytest.mark.parametrize("body,param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wat"}}}},
     "response_format.json_schema.schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}]},
     "tools.0.function.parameters.type"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "missing"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "tools"),
])
def test_bad_structured_requests_are_400s_naming_the_field(structured_server, body, param):
    r = httpx.post(structured_server.url + "/v1/chat/completions", timeout=60,
                   json={"messages": MSG, "max_tokens": 8, **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


class Item(BaseModel):
    sku: str = Field(pattern=r"^[A-Z]{3}-[0-9]{2}$")
    qty: int = Field(ge=1, le=9)


class Order(BaseModel):
    status: str = Field(max_length=8)
    items: list[Item] = Field(min_length=1, max_length=3)


def test_openai_sdk_parse_helper_and_tools(structured_server):
    client = openai.OpenAI(base_url=structured_server.url + "/v1", api_key="unused", max_retries=0)
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    for seed in range(6):
        done = parse(model="tiny", messages=MSG, response_format=Order, max_tokens=320,
                     temperature=1.0, seed=seed)
        order = done.choices[0].message.parsed
        assert isinstance(order, Order) and 1 <= len(order.items) <= 3
    done = client.chat.completions.create(model="tiny", messages=MSG, tools=TOOLS, tool_choice="required",
                                          max_tokens=600, temperature=1.0, seed=1)
    for call in done.choices[0].message.tool_calls:
        validate_call(call.model_dump())
    stream = client.chat.completions.create(model="tiny", messages=MSG, tools=TOOLS, stream=True,
                                            tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                            max_tokens=600, temperature=1.0, seed=2)
    calls = [tc for chunk in stream for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices]
    assert [tc.function.name for tc in calls] == ["get_weather"]
    validate_call(calls[0].model_dump())
