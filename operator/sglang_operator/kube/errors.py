"""API errors: which are worth retrying, and how to say them in one line without leaking bodies."""
from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException


class ResourceTypeMissing(Exception):
    """The API server does not serve this kind at all (its CRD is not installed)."""


def api_error_summary(err: ApiException) -> str:
    """The API server's message (field errors included), never the request body we sent."""
    try:
        return json.loads(err.body or "").get("message") or f"HTTP {err.status}"
    except ValueError:
        return f"HTTP {err.status} {err.reason or ''}".strip()


def transient(err: ApiException) -> bool:
    """Worth retrying as is: no answer, server-side trouble, throttling, a write conflict."""
    return not err.status or err.status >= 500 or err.status in (409, 429)


def describe(err: BaseException) -> str:
    """One line for logs and retry messages: the server's message, never request or response bodies."""
    if isinstance(err, ApiException):
        return f"HTTP {err.status}: {api_error_summary(err)}"
    return f"{type(err).__name__}: {str(err)[:200]}"
