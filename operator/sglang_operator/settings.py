"""The operator's settings: one typed object, built once from the command line (cli.py) and passed
to the handlers through kopf's memo (handlers.py). Where the chart or a deployment sets environment
variables (POD_NAME, POD_NAMESPACE, SGLANG_OPERATOR_AUTOSCALER_*), they are the flags' defaults."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Mapping

AUTOSCALER_ENV_PREFIX = "SGLANG_OPERATOR_AUTOSCALER_"


@dataclass(frozen=True)
class AutoscalerSettings:
    """Operator-wide knobs of the autoscaler (the per-deployment ones are in spec.autoscaling)."""

    tolerance: float = 0.1  # the HPA's default
    scrape_timeout: float = 2.0  # seconds per leader
    concurrency: int = 16  # scrapes in flight
    idle_interval: float = 15.0  # how often a deployment without autoscaling is looked at

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "AutoscalerSettings":
        """SGLANG_OPERATOR_AUTOSCALER_<FIELD> where set, else the defaults above."""
        return cls(**{f.name: type(f.default)(env[key]) for f in fields(cls)
                      if (key := AUTOSCALER_ENV_PREFIX + f.name.upper()) in env})


@dataclass(frozen=True)
class LeaderElection:
    """A coordination.k8s.io Lease held while this replica runs the controllers (leader.py)."""

    namespace: str
    name: str
    identity: str
    lease_duration: float = 15
    renew_deadline: float = 10
    retry_period: float = 2


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # watched namespaces; empty: all of them
    resync_seconds: float = 300  # safety-net resync of every object
    # Reconcile passes in flight (kopf's thread pool; our API connection pool is sized to match). A
    # pass mostly waits on the API server, so the threads' count, not the CPU, bounds the rate of
    # first passes after a start: 1,000 objects waited on 6 threads (kopf's default on 2 cores).
    workers: int = 24
    watch_timeout: int | None = None  # server-side timeout of each watch request (kopf default: none)
    metrics_port: int = 8000  # 0: no /metrics
    metrics_addr: str = "0.0.0.0"
    liveness: str | None = None  # kopf's liveness endpoint URL
    leader_election: LeaderElection | None = None
    log_format: str = "json"  # plain | full | json
    verbose: bool = False
    debug: bool = False
    autoscaler: AutoscalerSettings = field(default_factory=AutoscalerSettings)

    @property
    def all_namespaces(self) -> bool:
        return not self.namespaces
