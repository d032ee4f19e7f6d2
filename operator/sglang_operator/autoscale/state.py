"""The autoscaler's memory: recent recommendations and scale events, persisted on the LeaderWorkerSet.

Kept as change points, not one sample per scrape: recommendation r_i holds from t_i until the next
change point (the last one until now). Under steady load nothing changes, so nothing is written.
It lives in an annotation on the LeaderWorkerSet, written in the same server-side apply as
`spec.replicas`, so a restarted operator resumes with the windows it had (no burst of scaling) and a
scale and the event that records it land together.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

STATE_ANNOTATION = "sglangfleet.dev/autoscaler-state"
_VERSION = 1


@dataclass(frozen=True)
class State:
    recommendations: tuple[tuple[float, int], ...] = ()  # (since, recommended groups), oldest first
    events: tuple[tuple[float, int], ...] = ()  # (when, signed change in groups), oldest first

    def record(self, now: float, recommendation: int) -> "State":
        """Add a change point unless the recommendation is unchanged."""
        if self.recommendations and self.recommendations[-1][1] == recommendation:
            return self
        return State(self.recommendations + ((now, recommendation),), self.events)

    def scaled(self, now: float, change: int) -> "State":
        return State(self.recommendations, self.events + ((now, change),)) if change else self

    def recommendations_within(self, now: float, window: float) -> list[int]:
        """Recommendations in force at some time in (now - window, now]."""
        recs = self.recommendations
        return [r for i, (_, r) in enumerate(recs)
                if i == len(recs) - 1 or recs[i + 1][0] > now - window]

    def changes_within(self, now: float, period: float) -> tuple[int, int]:
        """(groups added, groups removed) by events in (now - period, now]."""
        recent = [d for t, d in self.events if t > now - period]
        return sum(d for d in recent if d > 0), -sum(d for d in recent if d < 0)

    def pruned(self, now: float, keep_recommendations: float, keep_events: float) -> "State":
        """Forget what no window or period can see any more (the last recommendation always stays)."""
        recs = self.recommendations
        kept = tuple(p for i, p in enumerate(recs) if i == len(recs) - 1 or recs[i + 1][0] > now - keep_recommendations)
        return State(kept, tuple(e for e in self.events if e[0] > now - keep_events))

    def encode(self) -> str:
        return json.dumps({"v": _VERSION, "rec": [[round(t, 3), r] for t, r in self.recommendations],
                           "ev": [[round(t, 3), d] for t, d in self.events]}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> "State":
        """A missing or unreadable annotation is an empty memory (someone edited it; start afresh)."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if raw.get("v") != _VERSION:
                return cls()
            return cls(tuple((float(t), int(r)) for t, r in raw.get("rec", [])),
                       tuple((float(t), int(d)) for t, d in raw.get("ev", [])))
        except (ValueError, TypeError, AttributeError):
            return cls()


def state_of(lws: Mapping[str, Any] | None) -> State:
    annotations = ((lws or {}).get("metadata") or {}).get("annotations") or {}
    return State.decode(annotations.get(STATE_ANNOTATION))
