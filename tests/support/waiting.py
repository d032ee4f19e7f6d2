"""Polling: the one way tests wait for something to become true."""
from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(check: Callable[[], Any], timeout: float = 10, interval: float = 0.1, what: str = "condition",
             ignore: Callable[[BaseException], bool] = lambda e: False) -> Any:
    """Poll until `check()` returns something truthy and return it. Exceptions for which
    `ignore(e)` is true count as "not yet"; any other exception propagates."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as e:  # noqa: BLE001 - filtered by `ignore`
            if not ignore(e):
                raise
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
