"""What the autoscaler tells people, as pure functions of a decision: the status fields it owns, its
two conditions and the Event message of a scale."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from ..kube.conditions import condition, groups, of_types, timestamp, with_transition_times
from .decide import DOWN_LIMIT, ROLLOUT, TOO_FEW, TOO_MANY, UP_LIMIT, Config, Decision, Observation

SCALING_ACTIVE, SCALING_LIMITED = "ScalingActive", "ScalingLimited"
AUTOSCALER_CONDITIONS = (SCALING_ACTIVE, SCALING_LIMITED)
AUTOSCALER_FIELDS = ("queueDepth", "lastScaleTime")  # besides its conditions; no other writer has them


def _num(x: float) -> str:
    return f"{x:g}"


def observed(metric: str, d: Decision, obs: Observation, cfg: Config) -> str:
    if d.total is None:
        return f"no ready leader reported {metric}"
    missing = f"; {obs.missing} without a value" if obs.missing else ""
    return (f"{metric} = {_num(d.total)} over {len(obs.values)} leader(s){missing}, target {_num(cfg.target)} "
            f"per group -> recommendation {d.proposal}")


def limit_text(reason: str | None, cfg: Config) -> str:
    return {
        TOO_MANY: f"at maxReplicas ({cfg.max_replicas})",
        TOO_FEW: f"at minReplicas ({cfg.min_replicas})",
        UP_LIMIT: "held back by the scaleUp policies",
        DOWN_LIMIT: "held back by the scaleDown policies",
        ROLLOUT: "no scale-down while a rolling update is in progress",
    }.get(reason or "", "")


def conditions(metric: str, d: Decision, obs: Observation, cfg: Config) -> list[dict[str, Any]]:
    """ScalingActive and ScalingLimited, without timestamps."""
    if d.active:
        active = condition(SCALING_ACTIVE, True, "ValidMetricFound", f"{observed(metric, d, obs, cfg)}.")
    else:
        active = condition(SCALING_ACTIVE, False, "NoMetrics",
                           f"No ready leader reported {metric}; holding at {groups(obs.current)} "
                           "(missing metrics are never a reason to scale down).")
    if d.limited:
        limited = condition(SCALING_LIMITED, True, d.limited, f"{groups(d.desired)}: {limit_text(d.limited, cfg)}.")
    else:
        limited = condition(SCALING_LIMITED, False, "DesiredWithinRange",
                            f"{groups(d.desired)} within [{cfg.min_replicas}, {cfg.max_replicas}].")
    return [active, limited]


def disabled_conditions() -> list[dict[str, Any]]:
    return [condition(SCALING_ACTIVE, False, "Disabled",
                      "autoscaling.enabled is false: spec.parallelism.dp (or the scale subresource, "
                      "e.g. kubectl scale, HPA, KEDA) sets the number of groups.")]


def status_fields(stored: Mapping[str, Any] | None, conds: list[dict[str, Any]], now: datetime, *,
                  queue: float | None = None, scaled: bool | None = None) -> dict[str, Any]:
    """Every status field the autoscaler owns (server-side apply drops owned fields left out).
    `scaled`: whether this tick scaled; None while autoscaling is off (lastScaleTime goes too)."""
    stored = stored or {}
    out: dict[str, Any] = {"conditions": with_transition_times(conds, of_types(stored, AUTOSCALER_CONDITIONS),
                                                               now, None)}
    if queue is not None:
        out["queueDepth"] = int(round(queue))
    stamp = timestamp(now) if scaled else stored.get("lastScaleTime")
    if stamp and scaled is not None:
        out["lastScaleTime"] = stamp
    return out


def status_changed(stored: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    stored = stored or {}
    conds = {c["type"]: c for c in of_types(stored, AUTOSCALER_CONDITIONS)}
    return ({k: stored.get(k) for k in AUTOSCALER_FIELDS} != {k: new.get(k) for k in AUTOSCALER_FIELDS}
            or conds != {c["type"]: c for c in new["conditions"]})


def scale_message(metric: str, d: Decision, obs: Observation, cfg: Config) -> str:
    verb = "up" if d.desired > obs.current else "down"
    why = limit_text(d.limited, cfg)
    return (f"Scaled {verb} from {obs.current} to {groups(d.desired)}: {observed(metric, d, obs, cfg)}"
            + (f" ({why})" if why else ""))
