"""What the end-to-end tests send a real fleet: a steady load that counts what users see, and the
fleet manifest they start from."""
from __future__ import annotations

import threading
import time

import httpx

from . import fleet

# Probe timings for tests: notice a stopped runtime in seconds, never restart it for that.
FAST_PROBES = {"startup": {"periodSeconds": 2, "failureThreshold": 150},
               "readiness": {"periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 1},
               "liveness": {"periodSeconds": 10, "failureThreshold": 100}}


def e2e_fleet(bed, models_dir: str, name: str, **kw) -> dict:
    """examples/cpu-tiny.yaml on the bed's runtime image, with FAST_PROBES."""
    doc = fleet.cpu_fleet(name, bed.images["radix-runtime"], models_dir, **kw)
    doc["spec"]["probes"] = FAST_PROBES
    return doc


class Load:
    """Requests through a Service from `clients` threads until stopped; counts what the user sees."""

    def __init__(self, url: str, clients: int, max_new_tokens: int = 8, model: str | None = None):
        """`model`: named in each /generate request (SMG, with any worker discovery, requires it)."""
        self.url, self.max_new = url, max_new_tokens
        self.named = {"model": model} if model else {}
        self.sent = self.ok = 0
        self.failures: list[tuple[float, str]] = []
        self.ok_times: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout=150)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as c:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    r = c.post(f"{self.url}/generate", json={
                        **self.named, "input_ids": fleet.PROMPT_IDS, "sampling_params": {
                            "max_new_tokens": self.max_new, "temperature": 0, "ignore_eos": True}})
                    good = r.status_code == 200
                    why = f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    good, why = False, f"{type(e).__name__}: {e}"
                with self._lock:
                    self.sent += 1
                    if good:
                        self.ok += 1
                        self.ok_times.append(time.monotonic())
                    else:
                        self.failures.append((t, why))
                if not good:
                    time.sleep(0.1)

    def longest_failure_window(self) -> float:
        """Longest time between two successes that had failures in between."""
        times = sorted(self.ok_times)
        worst = 0.0
        for a, b in zip(times, times[1:]):
            if any(a < t < b for t, _ in self.failures):
                worst = max(worst, b - a)
        return worst
