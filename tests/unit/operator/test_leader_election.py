"""Leader election logic over an in-memory Lease store with the API server's optimistic concurrency
(a PUT with a stale resourceVersion is a 409). The real API server is used in the HA integration test."""
from __future__ import annotations

import copy
import threading

from kubernetes.client.exceptions import ApiException

from sglang_operator.leader import LeaderElector


class LeaseStore:
    """GET/POST/PUT of one Lease, as Kube.request would answer them."""

    def __init__(self):
        self.obj: dict | None = None
        self.rv = 0
        self.writes = 0

    def request(self, method: str, path: str, body=None, **_):
        if method == "GET":
            if self.obj is None:
                raise ApiException(status=404)
            return copy.deepcopy(self.obj)
        if method == "POST":
            if self.obj is not None:
                raise ApiException(status=409)
        elif method == "PUT":
            if body["metadata"].get("resourceVersion") != self.obj["metadata"]["resourceVersion"]:
                raise ApiException(status=409)
        self.rv += 1
        self.writes += 1
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.obj)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(store, clock, who: str) -> LeaderElector:
    return LeaderElector(store, "ns", "lease", who, lease_duration=15, renew_deadline=10, retry_period=2, clock=clock)


def test_first_candidate_wins_second_waits_until_expiry_by_its_own_clock():
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.try_acquire_or_renew() and store.obj["spec"]["holderIdentity"] == "a"
    assert not b.try_acquire_or_renew()
    clock.t += 10
    assert a.try_acquire_or_renew()  # renewal: b sees a changed record and restarts its own count
    clock.t += 10
    assert not b.try_acquire_or_renew()
    clock.t += 16  # a stopped renewing 16 s ago (b's clock)
    assert b.try_acquire_or_renew()
    assert store.obj["spec"]["holderIdentity"] == "b" and store.obj["spec"]["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()  # the old leader learns it lost


def test_concurrent_takeover_has_exactly_one_winner():
    store, clock = LeaseStore(), Clock()
    elector(store, clock, "old").try_acquire_or_renew()
    b, c = elector(store, clock, "b"), elector(store, clock, "c")
    b.try_acquire_or_renew(), c.try_acquire_or_renew()  # both observe the record
    clock.t += 20
    stale = copy.deepcopy(store.obj)  # c read before b wrote
    assert b.try_acquire_or_renew()
    store_get = store.request
    store.request = lambda method, path, **kw: copy.deepcopy(stale) if method == "GET" else store_get(method, path, **kw)
    assert not c.try_acquire_or_renew()  # its PUT carries a stale resourceVersion: 409
    assert store.obj["spec"]["holderIdentity"] == "b"


def test_release_hands_over_at_once():
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.acquire(threading.Event())
    assert not b.try_acquire_or_renew()
    a.release()
    assert not a.is_leader and store.obj["spec"].get("holderIdentity") is None
    assert b.try_acquire_or_renew()


def test_keep_gives_up_when_renewals_fail_past_the_deadline():
    store, clock = LeaseStore(), Clock()
    a = elector(store, clock, "a")
    a.retry_period = 0.001  # real waits, fake clock
    assert a.acquire(threading.Event())

    def failing(method, path, **kw):
        clock.t += 3
        raise ApiException(status=503)
    store.request = failing
    assert a.keep(threading.Event()) is False and not a.is_leader
    stopped = threading.Event()
    stopped.set()
    assert elector(LeaseStore(), clock, "x").keep(stopped) is True  # a requested stop is not a loss
