"""How many groups: a pure function of the configuration, one observation, the remembered state and
the time. The shape is the HorizontalPodAutoscaler's (pkg/controller/podautoscaler), which has
years of production behind it:

1. proposal: ceil(total / target), unless total / (target * current) is within `tolerance` of 1
   (the HPA's rule for an AverageValue external metric). Groups without a usable value (leader not
   ready, not answering, no metric) are never a reason to scale down: they count as 0 when the
   signal says up (a leader that is not ready gets no traffic) and as exactly at target when it
   says down.
2. stabilization: the lowest proposal of the up window caps a rise, the highest of the down window
   floors a fall (so a short burst or a short lull moves nothing).
3. no scale-down while a rollout is in progress (old and new groups are both counted then).
4. rate policies (Pods or Percent per period, Max/Min/Disabled), then [minReplicas, maxReplicas],
   which always win.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from ..api.autoscaling import AutoscalingSpec
from .state import State

DEFAULT_TOLERANCE = 0.1  # the HPA's default

# ScalingLimited reasons (HPA's words where it has them).
TOO_FEW, TOO_MANY = "TooFewReplicas", "TooManyReplicas"
UP_LIMIT, DOWN_LIMIT = "ScaleUpLimit", "ScaleDownLimit"
ROLLOUT = "RolloutInProgress"


@dataclass(frozen=True)
class Policy:
    type: Literal["Pods", "Percent"]
    value: int
    period: float


@dataclass(frozen=True)
class Behavior:
    window: float
    policies: tuple[Policy, ...]
    select: Literal["Max", "Min", "Disabled"] = "Max"


@dataclass(frozen=True)
class Config:
    min_replicas: int
    max_replicas: int
    target: float  # metric value per group to aim for
    up: Behavior
    down: Behavior
    tolerance: float = DEFAULT_TOLERANCE

    @classmethod
    def from_spec(cls, a: AutoscalingSpec, tolerance: float = DEFAULT_TOLERANCE) -> "Config":
        def behavior(b) -> Behavior:
            return Behavior(b.stabilization_window_seconds,
                            tuple(Policy(p.type, p.value, p.period_seconds) for p in b.policies), b.select_policy)
        return cls(a.min_replicas, a.max_replicas if a.max_replicas is not None else a.min_replicas,
                   a.target_per_replica, behavior(a.scale_up), behavior(a.scale_down), tolerance)

    @property
    def memory(self) -> tuple[float, float]:
        """How long recommendations and scale events stay relevant."""
        periods = [p.period for p in self.up.policies + self.down.policies] or [0]
        return max(self.up.window, self.down.window), max(periods)


@dataclass(frozen=True)
class Observation:
    current: int  # the LeaderWorkerSet's spec.replicas
    values: Sequence[float]  # the metric of each ready leader that answered
    missing: int = 0  # groups of `current` without a usable value
    rollout: bool = False  # a rolling update of the groups is under way


@dataclass(frozen=True)
class Decision:
    desired: int
    proposal: int | None  # before stabilization and limits; None without metrics
    total: float | None  # the metric summed over reporting leaders
    limited: str | None  # why `desired` is not what stabilization asked for (a ScalingLimited reason)
    state: State

    @property
    def active(self) -> bool:
        return self.proposal is not None


def _ceil(x: float) -> int:
    """ceil that ignores float noise: 6 groups' worth of load summed in another order can come out as
    6.000000000000001, and one extra group for a rounding error is not a decision."""
    return math.ceil(x - 1e-9)


def propose(cfg: Config, obs: Observation) -> int | None:
    """Step 1: the raw recommendation, or None when no leader reported the metric."""
    if not obs.values:
        return None
    total = float(sum(obs.values))
    per_current = cfg.target * max(obs.current, 1)  # the band is relative to the groups we have
    if total / per_current > 1 + cfg.tolerance:  # missing groups as 0
        return max(_ceil(total / cfg.target), obs.current)  # seeing less than we have: no reason to go down
    adjusted = total + obs.missing * cfg.target  # missing groups exactly at target
    if adjusted / per_current < 1 - cfg.tolerance:
        return min(_ceil(adjusted / cfg.target), obs.current)
    return obs.current


def stabilize(current: int, proposal: int, state: State, now: float, cfg: Config) -> int:
    """Step 2 (state already holds `proposal` as its newest recommendation)."""
    up = min(state.recommendations_within(now, cfg.up.window) + [proposal]) if cfg.up.window else proposal
    down = max(state.recommendations_within(now, cfg.down.window) + [proposal]) if cfg.down.window else proposal
    return min(max(current, up), down)


def _select(select: str, candidates: list[int], larger_is_more: bool) -> int:
    pick_more = (select == "Max") == larger_is_more
    return max(candidates) if pick_more else min(candidates)


def up_limit(current: int, state: State, now: float, b: Behavior) -> int:
    """The most groups the scale-up policies allow now (HPA calculateScaleUpLimitWithScalingRules)."""
    if b.select == "Disabled":
        return current
    out = []
    for p in b.policies:
        added, removed = state.changes_within(now, p.period)
        start = current - added + removed  # groups at the start of the period
        out.append(start + p.value if p.type == "Pods" else _ceil(start * (1 + p.value / 100)))
    return max(current, _select(b.select, out, larger_is_more=True))


def down_limit(current: int, state: State, now: float, b: Behavior) -> int:
    """The fewest groups the scale-down policies allow now (HPA calculateScaleDownLimitWithBehaviors)."""
    if b.select == "Disabled":
        return current
    out = []
    for p in b.policies:
        added, removed = state.changes_within(now, p.period)
        start = current + removed - added
        out.append(start - p.value if p.type == "Pods" else math.floor(start * (1 - p.value / 100)))
    return min(current, _select(b.select, out, larger_is_more=False))


def decide(cfg: Config, obs: Observation, state: State, now: float) -> Decision:
    """Steps 1-4; the returned state records the proposal and, when `desired` differs from
    `current`, the scale event."""
    keep_recs, keep_events = cfg.memory
    state = state.pruned(now, keep_recs, keep_events)
    current = obs.current
    proposal = propose(cfg, obs)
    total = float(sum(obs.values)) if obs.values else None
    limited: str | None = None
    if proposal is None:
        want = current  # no metrics: hold (bounds below still apply)
    else:
        state = state.record(now, proposal)
        want = stabilize(current, proposal, state, now, cfg)
        if want < current and obs.rollout:
            want, limited = current, ROLLOUT
    desired = want
    if want > current:
        desired = min(want, up_limit(current, state, now, cfg.up))
        if desired < want:
            limited = UP_LIMIT
    elif want < current:
        desired = max(want, down_limit(current, state, now, cfg.down))
        if desired > want:
            limited = DOWN_LIMIT
    if desired > cfg.max_replicas:
        desired, limited = cfg.max_replicas, TOO_MANY
    elif desired < cfg.min_replicas:
        desired, limited = cfg.min_replicas, TOO_FEW
    elif proposal is not None and limited is None:
        # The raw recommendation lay outside the bounds even though stabilization hid it.
        if proposal > cfg.max_replicas and desired == cfg.max_replicas:
            limited = TOO_MANY
        elif proposal < cfg.min_replicas and desired == cfg.min_replicas:
            limited = TOO_FEW
    return Decision(desired, proposal, total, limited, state.scaled(now, desired - current))
