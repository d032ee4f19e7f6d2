"""Probe defaults for slow-loading GPU servers, merged with spec.probes overrides.

Budgets: startup 10 s x 180 = 30 min for multi-minute weight loads (the liveness probe only starts
after it succeeds); readiness/liveness timeouts of 30 s sit above the server's own 20 s health
generation deadline, so a busy-but-fine server does not flap.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..api.probes import ProbeOverride
from ..api.spec import SGLangDeploymentSpec
from .engines import engine_of

HEALTH = "/health"


@dataclass(frozen=True)
class Probe:
    path: str
    period_seconds: int
    timeout_seconds: int
    failure_threshold: int
    initial_delay_seconds: int = 0

    def overridden(self, o: ProbeOverride | None, *, keep_path: bool = False) -> "Probe":
        if o is None:
            return self
        return Probe(
            path=self.path if keep_path or o.path is None else o.path,
            period_seconds=o.period_seconds or self.period_seconds,
            timeout_seconds=o.timeout_seconds or self.timeout_seconds,
            failure_threshold=o.failure_threshold or self.failure_threshold,
            initial_delay_seconds=self.initial_delay_seconds if o.initial_delay_seconds is None else o.initial_delay_seconds,
        )

    def to_api(self) -> dict:
        return {
            "httpGet": {"path": self.path, "port": "http"},
            "initialDelaySeconds": self.initial_delay_seconds,
            "periodSeconds": self.period_seconds,
            "timeoutSeconds": self.timeout_seconds,
            "failureThreshold": self.failure_threshold,
            "successThreshold": 1,
        }


STARTUP = Probe(HEALTH, period_seconds=10, timeout_seconds=30, failure_threshold=180)
READINESS = Probe(HEALTH, period_seconds=15, timeout_seconds=30, failure_threshold=3)
LIVENESS = Probe(HEALTH, period_seconds=30, timeout_seconds=30, failure_threshold=5)


def leader_probes(spec: SGLangDeploymentSpec) -> dict[str, dict]:
    """The leader serves the API: readiness runs a real generation (/health_generate)."""
    p = spec.probes
    readiness = replace(READINESS, path=engine_of(spec).leader_readiness_path)
    return {
        "startupProbe": STARTUP.overridden(p.startup).to_api(),
        "readinessProbe": readiness.overridden(p.readiness).to_api(),
        "livenessProbe": LIVENESS.overridden(p.liveness).to_api(),
    }


def worker_probes(spec: SGLangDeploymentSpec) -> dict[str, dict]:
    """Workers cannot generate on their own; they answer /health for their group's health.

    Timing overrides apply, the path stays /health (a leader-only path would never pass here).
    """
    p = spec.probes
    return {
        "startupProbe": STARTUP.overridden(p.startup, keep_path=True).to_api(),
        "readinessProbe": READINESS.overridden(p.readiness, keep_path=True).to_api(),
        "livenessProbe": LIVENESS.overridden(p.liveness, keep_path=True).to_api(),
    }
