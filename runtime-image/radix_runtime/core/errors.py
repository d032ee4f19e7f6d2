"""The two ways the engine refuses a request; the server turns them into 503 and 400."""
from __future__ import annotations


class QueueFullError(Exception):
    """The waiting queue is at max_queued_requests; the server answers 503 + Retry-After."""


class InvalidRequestError(ValueError):
    """A request the engine cannot serve (e.g. prompt + max_new_tokens beyond the context)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
