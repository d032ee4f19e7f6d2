"""Structured-output fixtures shared by the runtime tests and bench/structured.py: JSON schemas
that exercise nested objects, arrays, enums, required fields, number ranges and string patterns
(strings are bounded so a random-weight model finishes), a regex, tools, and a chat template that
teaches the Hermes/Qwen `<tool_call>` format and renders tool calls and tool results."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 10},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "email": {"type": "string", "pattern": "^[a-z]{1,8}@[a-z]{1,6}\\.com$"},
        },
        "required": ["name", "age", "email"],
    },
    "order": {
        "type": "object",
        "properties": {
            "order": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 1, "maximum": 99999},
                    "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                        "type": "object",
                        "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                                       "qty": {"type": "integer", "minimum": 1, "maximum": 9}},
                        "required": ["sku", "qty"]}},
                },
                "required": ["id", "items"],
            },
            "status": {"enum": ["new", "paid", "shipped"]},
            "priority": {"type": "number", "minimum": 0, "maximum": 1},
            "gift": {"type": "boolean"},
        },
        "required": ["order", "status", "priority", "gift"],
    },
    "tags": {"type": "array", "minItems": 1, "maxItems": 4,
             "items": {"type": "string", "enum": ["red", "green", "blue"]}},
    "optional": {
        "type": "object",
        "properties": {"id": {"type": "integer", "minimum": -5, "maximum": 5},
                       "note": {"type": ["string", "null"], "maxLength": 6},
                       "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 10}},
        "required": ["id"],
    },
}

REGEX = r"[0-9]{3}-[a-z]{2,4}(\.[A-Z])?"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}
STOCK = {"type": "function", "function": {
    "name": "get_stock", "description": "Stock price",
    "parameters": {"type": "object", "properties": {
        "ticker": {"type": "string", "pattern": "^[A-Z]{2,4}$"},
        "days": {"type": "integer", "minimum": 1, "maximum": 30}}, "required": ["ticker", "days"]}}}
TOOLS = [WEATHER, STOCK]

HERMES_TEMPLATE = """\
{%- if tools %}<|im_start|>system
You may call functions:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Call one as <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "assistant" and message.tool_calls %}<|im_start|>assistant
{{ message.content }}{% for tc in message.tool_calls %}<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def write_hermes_template(directory: Path) -> Path:
    path = Path(directory) / "hermes_tools.jinja"
    path.write_text(HERMES_TEMPLATE)
    return path


def validate(text: str, schema: dict) -> object:
    """The parsed value; raises unless `text` is JSON valid against `schema`."""
    value = json.loads(text)
    jsonschema.validate(value, schema)
    return value


def validate_call(call: dict, tools: list[dict] = TOOLS) -> dict:
    """An OpenAI tool call (dict) whose arguments validate against its function's parameters."""
    fn = call["function"]
    [tool] = [t for t in tools if t["function"]["name"] == fn["name"]]
    return validate(fn["arguments"], tool["function"]["parameters"])
