"""OpenAI tool calling: tool calls parsed out of the model's text, and the grammars that force them.

Parsers (`--tool-call-parser`, SGLang's names) read the format the chat template teaches:
- `hermes` (also `qwen25`, `qwen`): `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`,
  any number of them, text around them is content;
- `llama3`: the whole output is `{"name": ..., "parameters": {...}}` (optionally after
  `<|python_tag|>`, several separated by `;`), otherwise it is all content.
The default comes from the template's text (`default_parser`).

`tool_choice: "required"` and a named function are enforced with a JSON schema (as SGLang does):
the output is then a JSON array of `{"name", "parameters"}` objects, or the named function's
arguments object, and `ForcedCalls` turns it into the calls. Every parser is a `ToolStream`:
`feed(delta)` returns the content to send and the calls completed so far, `finish()` the rest, so
streaming and non-streaming answers share one implementation. Pure logic, no engine.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

PARSERS = ("hermes", "qwen25", "qwen", "llama3")
_JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


@dataclass
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def openai(self, index: int | None = None) -> dict:
        call = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}
        return call if index is None else {"index": index, **call}


def _call_from(obj, args_key: str | None = None) -> ToolCall | None:
    """{"name": str, "arguments"|"parameters": {...}} as a ToolCall, else None."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    keys = (args_key,) if args_key else ("arguments", "parameters")
    args = next((obj[k] for k in keys if k in obj), {})
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


class ToolStream:
    def feed(self, delta: str) -> tuple[str, list[ToolCall]]:
        raise NotImplementedError

    def finish(self) -> tuple[str, list[ToolCall]]:
        raise NotImplementedError

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """A whole output at once: (content, calls)."""
        content, calls = self.feed(text)
        rest, more = self.finish()
        return content + rest, calls + more


class HermesStream(ToolStream):
    START, END = "<tool_call>", "</tool_call>"

    def __init__(self):
        self.buf = ""  # text not yet sent as content nor parsed
        self.inside = False

    def feed(self, delta: str) -> tuple[str, list[ToolCall]]:
        self.buf += delta
        content, calls = [], []
        while True:
            if not self.inside:
                at = self.buf.find(self.START)
                if at < 0:
                    keep = _partial_suffix(self.buf, self.START)  # maybe a tag being written
                    content.append(self.buf[:len(self.buf) - keep])
                    self.buf = self.buf[len(self.buf) - keep:]
                    break
                content.append(self.buf[:at])
                self.buf, self.inside = self.buf[at + len(self.START):], True
            end = self.buf.find(self.END)
            if end < 0:
                break
            body, self.buf, self.inside = self.buf[:end], self.buf[end + len(self.END):], False
            call = _parse_json_call(body)
            if call is None:
                content.append(self.START + body + self.END)
            else:
                calls.append(call)
        return "".join(content), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        rest, self.buf = self.buf, ""
        if self.inside:  # the model stopped before closing the tag
            self.inside = False
            call = _parse_json_call(rest)
            return ("", [call]) if call is not None else (self.START + rest, [])
        return rest, []


class Llama3Stream(ToolStream):
    """Content unless the output starts like a call; a call-like output is held to the end."""

    TAG = "<|python_tag|>"

    def __init__(self):
        self.buf = ""
        self.mode: str | None = None  # None: undecided, "text", "call"

    def feed(self, delta: str) -> tuple[str, list[ToolCall]]:
        if self.mode == "text":
            return delta, []
        self.buf += delta
        head = self.buf.lstrip()
        if not head or self.TAG.startswith(head):
            return "", []
        if head.startswith("{") or head.startswith(self.TAG):
            self.mode = "call"
            return "", []
        self.mode, out, self.buf = "text", self.buf, ""
        return out, []

    def finish(self) -> tuple[str, list[ToolCall]]:
        text, self.buf = self.buf, ""
        body = text.strip()
        body = body[len(self.TAG):] if body.startswith(self.TAG) else body
        calls = [_parse_json_call(part) for part in _split_calls(body)] if body else []
        if calls and all(c is not None for c in calls):
            return "", calls
        return text, []


class ForcedCalls(ToolStream):
    """Output constrained by `forced_schema`: held to the end, then read as the calls."""

    def __init__(self, named: str | None):
        self.named = named
        self.buf = ""

    def feed(self, delta: str) -> tuple[str, list[ToolCall]]:
        self.buf += delta
        return "", []

    def finish(self) -> tuple[str, list[ToolCall]]:
        text, self.buf = self.buf, ""
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text, []  # cut short (max_tokens): the text as content
        if self.named is not None:
            call = _call_from({"name": self.named, "arguments": value})
            return ("", [call]) if call else (text, [])
        calls = [_call_from(v, "parameters") for v in value] if isinstance(value, list) else []
        if calls and all(c is not None for c in calls):
            return "", calls
        return text, []


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def _parse_json_call(body: str) -> ToolCall | None:
    try:
        return _call_from(json.loads(body.strip()))
    except json.JSONDecodeError:
        return None


def _split_calls(body: str) -> list[str]:
    """`{...}; {...}` -> the JSON texts (semicolons inside strings are left alone)."""
    parts, depth, in_str, esc, start = [], 0, False, False, 0
    for i, ch in enumerate(body):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == ";" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p for p in parts if p.strip()]


# ----------------------------------------------------------------------------- choosing


def default_parser(template_source: str | None) -> str:
    """The format a chat template teaches: Llama 3's JSON when it mentions <|python_tag|> or
    'parameters' without any <tool_call> tag, else Hermes/Qwen."""
    src = template_source or ""
    if "<tool_call>" not in src and ("<|python_tag|>" in src or "ipython" in src):
        return "llama3"
    return "hermes"


def new_stream(parser: str, tool_choice, tools: list) -> ToolStream:
    """The stream for a request: forced calls for "required" / a named function, else parsed."""
    if tool_choice == "required":
        return ForcedCalls(None)
    if tool_choice is not None and not isinstance(tool_choice, str):
        return ForcedCalls(tool_choice.function.name)
    return Llama3Stream() if parser == "llama3" else HermesStream()


def _params(tool) -> dict | bool:
    p = tool.function.parameters
    return {"type": "object", "properties": {}} if p is None else p


def forced_schema(tools: list, tool_choice, parallel: bool = True) -> dict | None:
    """The JSON schema the output must follow for a forced tool_choice, else None."""
    if tool_choice == "required":
        items = [{"type": "object", "properties": {"name": {"const": t.function.name},
                                                   "parameters": _params(t)},
                  "required": ["name", "parameters"]} for t in tools]
        schema = {"type": "array", "minItems": 1, "items": items[0] if len(items) == 1
                  else {"anyOf": items}}
        if not parallel:
            schema["maxItems"] = 1
        return schema
    if tool_choice is not None and not isinstance(tool_choice, str):
        return next(_params(t) for t in tools if t.function.name == tool_choice.function.name)
    return None


def check_schema(schema, field: str) -> None:
    """Raise ValueError(field, message) unless `schema` looks like JSON Schema: an object (or a
    boolean) whose `type`, `properties`, `items`, `required` and `enum` have the right shapes."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError(field, "a JSON schema must be an object")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in _JSON_TYPES:
            raise SchemaError(f"{field}.type", f"{k!r} is not a JSON Schema type")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise SchemaError(f"{field}.properties", "must be an object")
    for name, sub in props.items():
        check_schema(sub, f"{field}.properties.{name}")
    if "items" in schema:
        check_schema(schema["items"], f"{field}.items")
    req = schema.get("required", [])
    if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
        raise SchemaError(f"{field}.required", "must be a list of property names")
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise SchemaError(f"{field}.enum", "must be a list")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            check_schema(sub, f"{field}.{key}.{i}")


class SchemaError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message
