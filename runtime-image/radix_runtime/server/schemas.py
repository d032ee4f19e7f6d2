"""Request models: the single source of truth for what a request may carry.

Names and defaults follow SGLang (https://docs.sglang.ai/, its native and OpenAI API pages).
Models are strict (no "5" for 5, no 1 for true) and parsed straight from the raw body, so malformed
JSON and wrong types become the same 400. A parameter we accept but do not implement fails only when it asks for the behaviour we
lack (a non-default value), never for carrying its default.
"""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Ids = list[int]


def _unsupported(what: str):
    """A validator that lets a field through only while it holds its 'off' value."""

    def check(cls, v):
        if v is not None and v is not False and v != [] and v != {}:
            raise ValueError(f"{what} is not supported by radix_runtime")
        return v

    return check


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Lenient(BaseModel):
    # OpenAI clients send fields we have no use for (user, metadata, store, ...): ignore them.
    model_config = ConfigDict(strict=True, extra="ignore")


class SamplingParamsBody(_Strict):
    """SGLang's sampling_params dict, as a request body carries it (requests.py resolves it into
    the engine's core.request.SamplingParams)."""

    max_new_tokens: int | None = Field(128, ge=0)  # None: up to the context length
    min_new_tokens: int = Field(0, ge=0)
    n: int = Field(1, ge=1, le=128)
    stop: str | list[str] | None = None
    stop_token_ids: Ids | None = None
    stop_regex: str | list[str] | None = None
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = -1
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0)
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    json_schema: str | None = None
    regex: str | None = None
    ebnf: str | None = None
    structural_tag: str | dict | None = None
    logit_bias: dict[str, float] | None = None
    sampling_seed: int | None = None
    custom_params: dict[str, Any] | None = None  # only read by custom logit processors
    stream_interval: int | None = Field(None, ge=1)

    _no_structural_tag = field_validator("structural_tag")(_unsupported("structural_tag"))
    _no_stop_regex = field_validator("stop_regex")(_unsupported("stop_regex"))

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError("must be -1 (whole vocabulary) or at least 1")
        return v

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        if isinstance(v, list) and any(s == "" for s in v) or v == "":
            raise ValueError("stop strings must not be empty")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v):
        if v is not None:
            for key in v:
                if not key.lstrip("-").isdigit():
                    raise ValueError(f"keys must be token ids, got {key!r}")
        return v

    @model_validator(mode="after")
    def _one_constraint(self):
        given = [k for k in ("json_schema", "regex", "ebnf") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of json_schema, regex and ebnf (got {', '.join(given)})")
        return self

    @model_validator(mode="after")
    def _min_le_max(self):
        if self.max_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise ValueError("min_new_tokens must not exceed max_new_tokens")
        return self

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def logit_bias_ids(self) -> dict[int, float] | None:
        return {int(k): b for k, b in self.logit_bias.items()} if self.logit_bias else None


# ----------------------------------------------------------------------------- SGLang native


class _OneInput(BaseModel):
    """Native requests give their prompt as `text` or as `input_ids`, never both."""

    @model_validator(mode="after")
    def _one_input(self):
        if (self.text is None) == (self.input_ids is None):
            raise ValueError("give exactly one of text or input_ids")
        return self


class _Unsupported(BaseModel):
    """Top-level SGLang fields for modalities and features we lack: rejected only when used."""

    # images for vision-language models (server/vision.py reads them): per prompt a URL, data
    # URL, path or base64 string, or a list of them; a batch gives one entry per prompt
    image_data: Any = None
    audio_data: Any = None
    video_data: Any = None
    input_embeds: Any = None
    lora_path: Any = None
    custom_logit_processor: Any = None
    token_ids_logprob: Any = None
    return_hidden_states: Any = False
    cache_salt: Any = None  # ignoring it would share cached prefixes across tenants

    _no_media = field_validator("audio_data", "video_data")(
        _unsupported("audio and video input"))
    _no_embeds = field_validator("input_embeds")(_unsupported("input_embeds"))
    _no_lora = field_validator("lora_path")(_unsupported("LoRA adapters"))
    _no_clp = field_validator("custom_logit_processor")(_unsupported("custom_logit_processor"))
    _no_tidl = field_validator("token_ids_logprob")(_unsupported("token_ids_logprob"))
    _no_hidden = field_validator("return_hidden_states")(_unsupported("return_hidden_states"))
    _no_salt = field_validator("cache_salt")(_unsupported("cache_salt (cache isolation)"))


class GenerateRequest(_Unsupported, _OneInput):
    # Newer SGLang clients add fields (bootstrap_host, data_parallel_rank, ...): ignore those.
    model_config = ConfigDict(strict=True, extra="ignore")

    text: str | list[str] | None = None
    input_ids: Ids | list[Ids] | None = None
    sampling_params: SamplingParamsBody | list[SamplingParamsBody] | None = None
    rid: str | list[str] | None = None
    stream: bool = False
    return_logprob: bool | list[bool] = False
    logprob_start_len: int | list[int] = -1
    top_logprobs_num: int | list[int] = Field(0)
    return_text_in_logprobs: bool = False
    priority: int | None = None
    log_metrics: bool = True


class BatchRequest(_Strict):
    """Olla's SGLang docs' /batch: independent generate requests answered together."""

    requests: list[GenerateRequest] = Field(min_length=1)


class ExtendRequest(_Strict, _OneInput):
    """Olla's SGLang docs' /extend: append to the conversation `rid` and generate."""

    rid: str = Field(min_length=1)
    text: str | None = None
    input_ids: Ids | None = None
    sampling_params: SamplingParamsBody | None = None
    stream: bool = False
    return_logprob: bool = False
    top_logprobs_num: int = Field(0, ge=0)
    return_text_in_logprobs: bool = False


# ----------------------------------------------------------------------------- OpenAI


class StreamOptions(_Lenient):
    include_usage: bool = False


class JsonSchemaFormat(_Lenient):
    name: str = "response"
    description: str | None = None
    schema_: dict | bool = Field(True, alias="schema")
    strict: bool | None = False


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema", "structural_tag"] = "text"
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _shape(self):
        if self.type == "structural_tag":
            raise ValueError("response_format 'structural_tag' is not supported by radix_runtime")
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object ({name, schema, strict})")
        return self


class FunctionDef(_Lenient):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict | bool | None = None
    strict: bool | None = None


class Tool(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Lenient):
    name: str = Field(min_length=1)


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: NamedFunction


class _OpenAISampling(_Lenient):
    """Fields shared by /v1/completions and /v1/chat/completions, with SGLang's extras."""

    model: str | None = None
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    # SGLang extras
    top_k: int = -1
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    min_tokens: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0)
    stop_token_ids: Ids | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    regex: str | None = None
    json_schema: str | None = None
    ebnf: str | None = None
    rid: str | None = None
    cache_salt: str | None = None
    lora_path: Any = None
    response_format: ResponseFormat | None = None

    _no_salt = field_validator("cache_salt")(_unsupported("cache_salt (cache isolation)"))
    _no_lora = field_validator("lora_path")(_unsupported("LoRA adapters"))

    def sampling(self, max_new_tokens: int | None) -> SamplingParamsBody:
        """As SGLang sampling_params, so one conversion to the engine serves every route (the
        output constraints are the route's: openai.py's `grammar`)."""
        params = dict(
            max_new_tokens=max_new_tokens, min_new_tokens=self.min_tokens, n=self.n,
            stop=self.stop, stop_token_ids=self.stop_token_ids,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p, top_k=self.top_k, min_p=self.min_p,
            frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
            repetition_penalty=self.repetition_penalty, ignore_eos=self.ignore_eos,
            skip_special_tokens=self.skip_special_tokens,
            spaces_between_special_tokens=self.spaces_between_special_tokens,
            no_stop_trim=self.no_stop_trim, logit_bias=self.logit_bias, sampling_seed=self.seed)
        if max_new_tokens is not None and self.min_tokens > max_new_tokens:
            params["min_new_tokens"] = max_new_tokens
        return SamplingParamsBody.model_validate(params)


class CompletionRequest(_OpenAISampling):
    prompt: str | list[str] | Ids | list[Ids]
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    best_of: int | None = Field(None, ge=1)
    suffix: str | None = None

    _no_suffix = field_validator("suffix")(_unsupported("suffix (insertion)"))

    @model_validator(mode="after")
    def _best_of(self):
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of other than n is not supported by radix_runtime")
        return self


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | ImagePart] | None = None
    name: str | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, v):
        if isinstance(v, list):
            for i, part in enumerate(v):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in ("text", "image_url"):
                    raise ValueError(f"content part {i} has type {kind!r}; only text and "
                                     "image_url parts are supported by radix_runtime")
        return v

    def image_urls(self) -> list[str]:
        return [p.image_url.url for p in self.content or [] if isinstance(p, ImagePart)] \
            if isinstance(self.content, list) else []

    def as_template_dict(self, image_token: str = "", content_parts: bool = False) -> dict:
        """What chat templates expect: content as one string (text parts joined, `image_token`
        where an image was), or, for templates that read content parts (`content_parts`), a
        message with images as HF passes it: [{"type": "text", ...}, {"type": "image"}, ...]."""
        d = self.model_dump(exclude_none=True)
        if isinstance(self.content, list):
            if content_parts and self.image_urls():
                d["content"] = [{"type": "text", "text": p.text} if isinstance(p, TextPart)
                                else {"type": "image"} for p in self.content]
            else:
                d["content"] = "".join(p.text if isinstance(p, TextPart) else image_token
                                       for p in self.content)
        d.setdefault("content", "")  # an assistant turn of tool calls only
        for call in d.get("tool_calls") or []:
            # OpenAI sends arguments as JSON text; templates (as HF's) expect the object
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                try:
                    fn["arguments"] = json.loads(fn["arguments"])
                except json.JSONDecodeError:
                    pass
        return d




class ChatCompletionRequest(_OpenAISampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False

    def template_tools(self) -> list[dict] | None:
        """The tools as chat templates read them (OpenAI's shape, as plain dicts)."""
        return [t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None \
            else self.max_tokens


class EmbeddingRequest(_Lenient):
    input: str | list[str] | Ids | list[Ids]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    _no_dims = field_validator("dimensions")(_unsupported("dimensions (truncated embeddings)"))
