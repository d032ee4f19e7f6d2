"""Chat templates as HF transformers renders them: jinja2 in a sandbox with HF's globals.

Where the template comes from, first match wins: the `--chat-template` flag (a file: .jinja/.txt
holding the template, .json holding {"chat_template": ...}; a built-in name; or the template text),
a `chat_template.jinja` file in the tokenizer directory (newer HF tooling writes that), a
`chat_template.json` (older HF processors, e.g. LLaVA's), then tokenizer_config.json's
`chat_template` (a string, or a list of named templates: "default" is used).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .hf_files import read_json
from .tokenizer import token_text

BUILTIN = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
}


class ChatTemplateError(ValueError):
    """The template is missing, or rendering failed (e.g. it called raise_exception)."""


def _raise_exception(message):
    raise ChatTemplateError(message)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


def _tojson(value, indent=None, ensure_ascii=False, separators=None, sort_keys=False):
    # HF's tojson: keeps non-ASCII and does not HTML-escape (jinja's built-in one does).
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, separators=separators,
                      sort_keys=sort_keys)


@dataclass
class ChatTemplate:
    source: str
    special_tokens: dict[str, str | None]  # bos_token, eos_token, unk_token, pad_token
    origin: str  # where the template came from, for logs and /server_info

    @cached_property
    def takes_content_parts(self) -> bool:
        """Whether the template loops over a message's content parts (vision models' templates
        do, to place their image tokens); else it gets content as one string."""
        return bool(re.search(r"in\s+(message|msg|m)(\[['\"]content['\"]\]|\.content)", self.source))

    @cached_property
    def _compiled(self) -> jinja2.Template:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                           extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            return env.from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise ChatTemplateError(f"chat template ({self.origin}) does not compile: {e}") from e

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True,
               tools: list[dict] | None = None, continue_final_message: bool = False,
               **kwargs) -> str:
        context = {**self.special_tokens, **kwargs}
        try:
            text = self._compiled.render(messages=messages, tools=tools,
                                         add_generation_prompt=add_generation_prompt, **context)
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"chat template failed: {e}") from e
        if continue_final_message:
            # As HF: cut the rendering right after the last message's content so the model
            # continues it instead of starting a new turn.
            last = messages[-1].get("content") or ""
            cut = text.rfind(last.strip()) if last.strip() else -1
            if cut >= 0:
                text = text[: cut + len(last.strip())]
        return text


def load_chat_template(tokenizer_dir: str | Path,
                       override: str | None = None) -> ChatTemplate | None:
    """The template for a model directory (None when it has none and no override is given)."""
    tokenizer_dir = Path(tokenizer_dir)
    config = read_json(tokenizer_dir / "tokenizer_config.json")
    special = {name: token_text(config.get(name))
               for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    if override:
        source, origin = _resolve_override(override)
        return ChatTemplate(source, special, origin)
    jinja_file = tokenizer_dir / "chat_template.jinja"
    if jinja_file.is_file():
        return ChatTemplate(jinja_file.read_text(), special, str(jinja_file))
    processor_file = tokenizer_dir / "chat_template.json"  # what HF processors wrote before 4.50
    source = _pick(read_json(processor_file).get("chat_template"))
    if source:
        return ChatTemplate(source, special, str(processor_file))
    source = _pick(config.get("chat_template"))
    if source:
        return ChatTemplate(source, special, str(tokenizer_dir / "tokenizer_config.json"))
    return None


def _resolve_override(value: str) -> tuple[str, str]:
    if value in BUILTIN:
        return BUILTIN[value], f"built-in {value}"
    path = Path(value)
    if path.is_file():
        if path.suffix == ".json":
            source = _pick(read_json(path).get("chat_template"))
            if not source:
                raise ChatTemplateError(f"{path} has no chat_template key")
            return source, str(path)
        return path.read_text(), str(path)
    if "{{" in value or "{%" in value:
        return value, "--chat-template text"
    raise ChatTemplateError(f"--chat-template {value!r}: not a file, a built-in name "
                            f"({', '.join(BUILTIN)}) or template text")


def _pick(template) -> str | None:
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        return named.get("default") or next(iter(named.values()), None)
    return template or None
