"""The autoscaler's decision: tables for the HPA-shaped steps, properties (hypothesis) for bounds,
monotonicity in load, stabilization, rate limits and missing metrics."""
from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sglang_operator.api.autoscaling import AutoscalingSpec
from sglang_operator.autoscale.decide import (DOWN_LIMIT, ROLLOUT, TOO_FEW, TOO_MANY, UP_LIMIT, Behavior, Config,
                                              Observation, Policy, decide, propose)
from sglang_operator.autoscale.state import State

FAST_UP = Behavior(0, (Policy("Pods", 1000, 1),))
FAST_DOWN = Behavior(0, (Policy("Pods", 1000, 1),))


def cfg(min_r=1, max_r=10, target=8.0, up=FAST_UP, down=FAST_DOWN, tolerance=0.1) -> Config:
    return Config(min_r, max_r, target, up, down, tolerance)


def obs(current, *values, missing=0, rollout=False) -> Observation:
    return Observation(current, list(values), missing, rollout)


# ---------------------------------------------------------------- step 1: the proposal

@pytest.mark.parametrize("current,values,missing,want", [
    (1, [0], 0, 0),            # idle: as few as possible (the bounds lift it to min later)
    (1, [8], 0, 1),            # exactly at target
    (1, [8.7], 0, 1),          # within the 10 % tolerance
    (1, [9], 0, 2),            # above: ceil(9 / 8)
    (2, [40, 0], 0, 5),        # total over leaders: ceil(40 / 8)
    (4, [7.5, 7.5, 7.5, 7.5], 0, 4),  # 30 / 32 = 0.94: within tolerance, keep 4
    (4, [4, 4, 4, 4], 0, 2),   # 16 / 8
    (4, [0, 0], 2, 2),         # two unseen groups count as at target when going down
    (4, [0], 3, 3),
    (4, [0], 4, 4),            # more unseen than seen cannot push below current
    (2, [20], 1, 3),           # going up, the unseen group counts as 0: ceil(20 / 8)
    (3, [10], 2, 3),           # up signal, but ceil(10/8)=2 < 3: seeing less is no reason to go down
    (3, [], 3, None),          # nobody answered: no proposal
])
def test_proposal(current, values, missing, want):
    assert propose(cfg(), obs(current, *values, missing=missing)) == want


def test_tolerance_is_configurable():
    assert propose(cfg(tolerance=0.0), obs(1, 8.7)) == 2
    assert propose(cfg(tolerance=0.5), obs(1, 11)) == 1


# ---------------------------------------------------------------- the whole decision, tables

def test_scales_up_at_once_and_records_the_event():
    d = decide(cfg(), obs(1, 30), State(), now=100.0)
    assert (d.desired, d.proposal, d.total, d.limited) == (4, 4, 30.0, None)
    assert d.state.events == ((100.0, 3),) and d.state.recommendations == ((100.0, 4),)


def test_bounds_win_and_name_the_limit():
    assert (decide(cfg(max_r=3), obs(1, 80), State(), 0).desired,
            decide(cfg(max_r=3), obs(1, 80), State(), 0).limited) == (3, TOO_MANY)
    d = decide(cfg(min_r=2), obs(3, 0), State(), 0)
    assert (d.desired, d.limited) == (2, TOO_FEW)
    # Current outside the bounds (the user just lowered max): back inside even without metrics.
    d = decide(cfg(max_r=3), obs(6, missing=6), State(), 0)
    assert (d.desired, d.proposal, d.limited) == (3, None, TOO_MANY)


def test_no_metrics_holds():
    d = decide(cfg(), obs(5, missing=5), State(((0.0, 5),)), 50.0)
    assert (d.desired, d.proposal, d.active) == (5, None, False)
    assert d.state.recommendations == ((0.0, 5),)  # nothing recorded for a blind tick


def test_down_window_uses_the_highest_recommendation():
    c = cfg(down=Behavior(60, (Policy("Pods", 1000, 1),)))
    s = decide(c, obs(4, 32), State(), 0).state  # recommends 4
    d = decide(c, obs(4, 0), s, 30)  # recommends 1, but 4 was in force 30 s ago
    assert (d.desired, d.proposal) == (4, 0)
    d = decide(c, obs(4, 0), d.state, 59.9)
    assert d.desired == 4
    d = decide(c, obs(4, 0), d.state, 90.1)  # 4 ended at t=30; 60 s later it left the window
    assert d.desired == 1


def test_up_window_uses_the_lowest_recommendation():
    c = cfg(up=Behavior(10, (Policy("Pods", 1000, 1),)))
    s = decide(c, obs(1, 8), State(), 0).state  # recommends 1
    d = decide(c, obs(1, 40), s, 5)  # recommends 5; 1 still in force within 10 s
    assert d.desired == 1
    d = decide(c, obs(1, 40), d.state, 14.9)
    assert d.desired == 1
    d = decide(c, obs(1, 40), d.state, 15.1)  # the 1 ended at t=5
    assert d.desired == 5


def test_a_short_burst_within_the_up_window_moves_nothing():
    c = cfg(up=Behavior(10, (Policy("Pods", 1000, 1),)))
    s = State()
    for t, load in [(0, 8), (3, 80), (6, 80), (9, 8), (12, 8), (20, 8)]:
        d = decide(c, obs(1, load), s, t)
        assert d.desired == 1, t
        s = d.state


@pytest.mark.parametrize("policies,select,want", [
    ([Policy("Pods", 2, 60)], "Max", 3),
    ([Policy("Percent", 100, 60)], "Max", 2),
    ([Policy("Pods", 2, 60), Policy("Percent", 300, 60)], "Max", 4),
    ([Policy("Pods", 2, 60), Policy("Percent", 300, 60)], "Min", 3),
    ([Policy("Pods", 2, 60)], "Disabled", 1),
])
def test_scale_up_policies(policies, select, want):
    c = cfg(up=Behavior(0, tuple(policies), select))
    d = decide(c, obs(1, 80), State(), 0)
    assert d.desired == want and d.limited == (UP_LIMIT if want < 10 else None)


@pytest.mark.parametrize("policies,select,want", [
    ([Policy("Pods", 1, 60)], "Max", 9),
    ([Policy("Percent", 50, 60)], "Max", 5),
    ([Policy("Pods", 1, 60), Policy("Percent", 50, 60)], "Max", 5),  # the larger change
    ([Policy("Pods", 1, 60), Policy("Percent", 50, 60)], "Min", 9),  # the smaller change
    ([Policy("Pods", 1, 60)], "Disabled", 10),
])
def test_scale_down_policies(policies, select, want):
    c = cfg(max_r=20, down=Behavior(0, tuple(policies), select))
    d = decide(c, obs(10, 0), State(), 0)
    assert d.desired == want and d.limited == DOWN_LIMIT


def test_rate_limits_count_earlier_scales_in_the_period():
    c = cfg(max_r=20, up=Behavior(0, (Policy("Pods", 2, 60),)))
    s = State()
    d = decide(c, obs(1, 160), s, 0)
    assert d.desired == 3
    d = decide(c, obs(3, 160), d.state, 30)  # the period still holds +2
    assert (d.desired, d.limited) == (3, UP_LIMIT)
    d = decide(c, obs(3, 160), d.state, 60.5)  # the +2 at t=0 has left the period
    assert d.desired == 5


def test_no_scale_down_during_a_rollout():
    d = decide(cfg(), obs(4, 0, rollout=True), State(), 0)
    assert (d.desired, d.limited) == (4, ROLLOUT)
    assert decide(cfg(), obs(2, 40, rollout=True), State(), 0).desired == 5  # up is fine


def test_from_spec_reads_the_api_defaults():
    c = Config.from_spec(AutoscalingSpec(enabled=True, min_replicas=2, max_replicas=6, target_per_replica=4))
    assert (c.min_replicas, c.max_replicas, c.target) == (2, 6, 4)
    assert c.up == Behavior(0, (Policy("Pods", 2, 60),), "Max")
    assert c.down == Behavior(300, (Policy("Pods", 1, 120),), "Max")
    assert c.memory == (300, 120)


# ---------------------------------------------------------------- properties

policies = st.lists(st.builds(Policy, st.sampled_from(["Pods", "Percent"]), st.integers(1, 300),
                              st.integers(1, 120)), min_size=1, max_size=3).map(tuple)
behaviors = st.builds(Behavior, st.integers(0, 120), policies, st.sampled_from(["Max", "Min", "Disabled"]))


@st.composite
def configs(draw) -> Config:
    lo = draw(st.integers(1, 10))
    hi = draw(st.integers(lo, 30))
    return Config(lo, hi, draw(st.floats(0.5, 50)), draw(behaviors), draw(behaviors), draw(st.sampled_from([0, 0.1, 0.3])))


@st.composite
def histories(draw) -> State:
    """A past of recommendations and scale events at increasing times before t=1000."""
    times = sorted(draw(st.lists(st.floats(700, 999), max_size=6, unique=True)))
    recs = tuple((t, draw(st.integers(0, 40))) for t in times)
    etimes = sorted(draw(st.lists(st.floats(700, 999), max_size=4, unique=True)))
    events = tuple((t, draw(st.integers(-5, 5).filter(bool))) for t in etimes)
    return State(recs, events)


loads = st.lists(st.floats(0, 500, allow_nan=False), max_size=8)
NOW = 1000.0


@settings(max_examples=300, deadline=None)
@given(configs(), st.integers(0, 40), loads, st.integers(0, 5), st.booleans(), histories())
def test_always_within_bounds(c, current, values, missing, rollout, state):
    d = decide(c, Observation(current, values, missing, rollout), state, NOW)
    assert c.min_replicas <= d.desired <= c.max_replicas


@settings(max_examples=300, deadline=None)
@given(configs(), st.integers(1, 40), loads, st.floats(0, 500), st.integers(0, 5), histories())
def test_more_load_never_means_fewer_groups(c, current, values, extra, missing, state):
    assume(values)
    more = values[:-1] + [values[-1] + extra]
    a = decide(c, Observation(current, values, missing), state, NOW).desired
    b = decide(c, Observation(current, more, missing), state, NOW).desired
    assert b >= a


@settings(max_examples=300, deadline=None)
@given(configs(), st.integers(1, 40), loads, st.integers(0, 5), st.integers(1, 5), histories())
def test_unseen_groups_are_never_a_reason_to_scale_down(c, current, values, missing, more, state):
    """More groups without a value never lowers the decision, and a leader that stops answering
    never takes the decision below what it was while it answered with anything up to the target."""
    assume(values)
    a = decide(c, Observation(current, values, missing), state, NOW).desired
    assert decide(c, Observation(current, values, missing + more), state, NOW).desired >= a
    at_most_target = [min(v, c.target) for v in values]
    seen = decide(c, Observation(current, at_most_target, missing), state, NOW).desired
    blind = decide(c, Observation(current, at_most_target[:-1], missing + 1), state, NOW).desired
    assert blind >= min(seen, max(c.min_replicas, min(current, c.max_replicas)))


@settings(max_examples=200, deadline=None)
@given(configs(), st.integers(1, 40), st.integers(1, 8), histories())
def test_without_any_metric_nothing_moves_inside_the_bounds(c, current, missing, state):
    d = decide(c, Observation(current, [], missing), state, NOW)
    assert d.desired == min(max(current, c.min_replicas), c.max_replicas)
    assert d.proposal is None and not d.active


@settings(max_examples=300, deadline=None)
@given(configs(), st.integers(1, 40), loads, st.integers(0, 3), histories())
def test_stabilization_bounds_the_move(c, current, values, missing, state):
    """The result never goes beyond the highest recommendation of the down window when falling,
    nor beyond the lowest of the up window when rising (bounds aside)."""
    d = decide(c, Observation(current, values, missing), state, NOW)
    if d.proposal is None:
        return
    recs_down = d.state.recommendations_within(NOW, c.down.window) if c.down.window else [d.proposal]
    recs_up = d.state.recommendations_within(NOW, c.up.window) if c.up.window else [d.proposal]
    if not (c.min_replicas <= current <= c.max_replicas and c.min_replicas < d.desired < c.max_replicas):
        return
    if d.desired < current:
        assert d.desired >= max(recs_down + [d.proposal])
    if d.desired > current:
        assert d.desired <= min(recs_up + [d.proposal])


@settings(max_examples=300, deadline=None)
@given(configs(), st.integers(1, 40), loads, st.integers(0, 3), histories())
def test_rate_policies_cap_each_period(c, current, values, missing, state):
    """Inside the bounds, a scale never exceeds what the selected policy allows over its period,
    counting the changes already made in that period."""
    d = decide(c, Observation(current, values, missing), state, NOW)
    if c.min_replicas <= current <= c.max_replicas and c.min_replicas < d.desired < c.max_replicas:
        b = c.up if d.desired > current else c.down
        if d.desired == current:
            return
        if b.select == "Disabled":
            pytest.fail("a disabled direction moved")
        allowed = []
        for p in b.policies:
            added, removed = state.changes_within(NOW, p.period)
            if d.desired > current:
                start = current - added + removed
                allowed.append(start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100)))
            else:
                start = current + removed - added
                allowed.append(start - p.value if p.type == "Pods" else math.floor(start * (1 - p.value / 100)))
        if d.desired > current:
            assert d.desired <= (max(allowed) if b.select == "Max" else min(allowed))
        else:
            assert d.desired >= (min(allowed) if b.select == "Max" else max(allowed))


@settings(max_examples=200, deadline=None)
@given(configs(), st.integers(1, 10), st.lists(st.tuples(st.floats(0.5, 20), st.floats(0, 300)), min_size=1, max_size=25))
def test_a_replayed_sequence_stays_in_bounds_and_remembers(c, current, ticks):
    """Run the loop over time (feeding back desired as current): bounds hold at every step and the
    state round-trips through its annotation encoding unchanged in meaning."""
    t, s = 0.0, State()
    for dt, load in ticks:
        t += dt
        d = decide(c, Observation(current, [load] * max(1, current), 0), State.decode(s.encode()), t)
        assert c.min_replicas <= d.desired <= c.max_replicas
        current, s = d.desired, d.state


def test_float_noise_in_the_sum_is_not_an_extra_group():
    """Found by the property above: 6 groups' worth of load summed in another order came out as
    6.000000000000001 targets, and a plain ceil asked for a 7th group."""
    t = 1.9752723160440224
    c = cfg(min_r=1, max_r=7, target=t, tolerance=0)
    seen = decide(c, Observation(7, [0.0, t], 5), State(), NOW).desired
    blind = decide(c, Observation(7, [0.0], 6), State(), NOW).desired
    assert seen == blind == 6
