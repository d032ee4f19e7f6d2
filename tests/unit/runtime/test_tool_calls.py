"""Tool-call parsing (server/tool_calls.py): the Hermes/Qwen `<tool_call>` and Llama 3 JSON formats,
whole and streamed in pieces of every size; forced calls' schemas; the JSON Schema shape check."""
from __future__ import annotations

import json

import jsonschema
import pytest

from radix_runtime.server import schemas
from radix_runtime.server.tool_calls import (ForcedCalls, HermesStream, Llama3Stream, SchemaError,
                                             check_schema, default_parser, forced_schema,
                                             new_stream)
from tests.support.structured import HERMES_TEMPLATE, TOOLS

HERMES = ('Let me check. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
          '"unit": "celsius"}}\n</tool_call>\n<tool_call>{"name": "get_stock", "arguments": '
          '{"ticker": "AB", "days": 3}}</tool_call> done')


def _streamed(stream, text: str, size: int):
    content, calls = "", []
    for i in range(0, len(text), size):
        c, k = stream.feed(text[i:i + size])
        content, calls = content + c, calls + k
    c, k = stream.finish()
    return content + c, calls + k


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_hermes_calls_and_content_whole_or_streamed(size):
    content, calls = _streamed(HermesStream(), HERMES, size)
    assert content == "Let me check. \n done"
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_stock", {"ticker": "AB", "days": 3})]


def test_hermes_keeps_malformed_calls_and_plain_text_as_content():
    assert HermesStream().parse("no tools <tool_ here") == ("no tools <tool_ here", [])
    bad = "<tool_call>{not json}</tool_call>"
    assert HermesStream().parse(bad) == (bad, [])
    # the model stopped before closing the tag: still a call
    content, [call] = HermesStream().parse('<tool_call>{"name": "f", "arguments": {}}')
    assert content == "" and call.name == "f" and call.arguments == "{}"


@pytest.mark.parametrize("size", [1, 5, 1000])
def test_llama3_json_calls(size):
    text = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "a;b"}}; {"name": "g", "parameters": {}}'
    content, calls = _streamed(Llama3Stream(), text, size)
    assert content == "" and [c.name for c in calls] == ["get_weather", "g"]
    assert json.loads(calls[0].arguments) == {"city": "a;b"}
    assert _streamed(Llama3Stream(), "Hello there {x}", size) == ("Hello there {x}", [])
    assert Llama3Stream().parse("{not a call") == ("{not a call", [])


def test_forced_calls_parse_the_constrained_output():
    content, [call] = ForcedCalls("get_weather").parse('{"city": "Rome", "unit": "celsius"}')
    assert content == "" and call.name == "get_weather"
    out = '[{"name": "get_stock", "parameters": {"ticker": "XY", "days": 2}}]'
    assert [c.name for c in ForcedCalls(None).parse(out)[1]] == ["get_stock"]
    assert ForcedCalls(None).parse('[{"name": "get_st') == ('[{"name": "get_st', [])  # cut short


def test_forced_schemas_accept_exactly_valid_calls():
    req = schemas.ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS, "tool_choice": "required"})
    schema = forced_schema(req.tools, "required")
    jsonschema.validate([{"name": "get_weather", "parameters": {"city": "x", "unit": "celsius"}}], schema)
    for bad in ([], [{"name": "get_weather", "parameters": {"city": "x"}}],
                [{"name": "nope", "parameters": {}}]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    assert forced_schema(req.tools, "required", parallel=False)["maxItems"] == 1
    named = schemas.NamedToolChoice.model_validate({"type": "function", "function": {"name": "get_stock"}})
    assert forced_schema(req.tools, named) == TOOLS[1]["function"]["parameters"]
    assert forced_schema(req.tools, "auto") is None
    assert isinstance(new_stream("llama3", "auto", req.tools), Llama3Stream)
    assert isinstance(new_stream("hermes", named, req.tools), ForcedCalls)


def test_check_schema_names_the_bad_part():
    check_schema(TOOLS[0]["function"]["parameters"], "p")
    check_schema(True, "p")
    for schema, field in [([], "p"), ({"type": "str"}, "p.type"),
                          ({"properties": {"a": {"type": "wat"}}}, "p.properties.a.type"),
                          ({"properties": []}, "p.properties"), ({"required": "a"}, "p.required"),
                          ({"anyOf": [{"type": "x"}]}, "p.anyOf.0.type")]:
        with pytest.raises(SchemaError) as e:
            check_schema(schema, "p")
        assert e.value.field == field


def test_default_parser_follows_the_template():
    assert default_parser(HERMES_TEMPLATE) == "hermes"
    assert default_parser("{{ '<|python_tag|>' }} ipython") == "llama3"
    assert default_parser(None) == "hermes"
