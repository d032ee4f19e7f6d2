"""One error type for every route, rendered in the shape both SGLang and the OpenAI SDK read:
`{"error": {"message", "type", "param", "code"}}`."""
from __future__ import annotations

import json

from aiohttp import web
from pydantic import ValidationError

_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    409: "ConflictError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "Error"),
                          "param": self.param, "code": self.status}}

    def response(self) -> web.Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return web.json_response(self.body(), status=self.status, headers=headers)


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, f"{param}: {message}" if param else message, param=param)


def from_validation_error(err: ValidationError) -> APIError:
    """The first problem, named by its dotted field path (e.g. `sampling_params.max_new_tokens`)."""
    errors = err.errors(include_url=False)
    # With unions pydantic reports one error per member; the deepest one says most.
    first = max(errors, key=lambda e: len(e["loc"]))
    loc = ".".join(str(p) for p in first["loc"] if not _is_union_tag(p))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "json_invalid":
        return bad_request(f"malformed JSON body ({msg})")
    return bad_request(msg, loc or None)


def _is_union_tag(part) -> bool:
    # pydantic puts the tried union member in the location ("list[int]", "str", "SamplingParamsBody");
    # it names a type, not a field (ours are snake_case), so leave it out of the path users see.
    return isinstance(part, str) and ("[" in part or part != part.lower()
                                      or part in {"str", "int", "float", "bool", "dict"})


def sse_error(message: str, status: int = 400) -> bytes:
    payload = APIError(status, message).body()
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
