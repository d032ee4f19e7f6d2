"""One failure policy for every trigger: the same backoff after exceptions and retryable problems,
no retry for problems that need a spec change, reset after a success."""
from __future__ import annotations

from sglang_operator.reconcile.reconciler import Outcome
from sglang_operator.reconcile.retry import Retrier, backoff, run_pass
from sglang_operator.reconcile.status import Problem


def test_backoff_grows_and_is_capped():
    delays = [backoff(r) for r in range(10)]
    assert delays[:4] == [1, 2, 4, 8]
    assert max(delays) == 60 and delays == sorted(delays)
    assert backoff(10_000) == 60


class Script:
    """A reconcile that answers from a list: an exception to raise or an Outcome to return."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def __call__(self, namespace, name, *, trigger):
        self.calls.append((namespace, name, trigger))
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a


class Timers:
    """Records scheduled retries; `fire()` runs the pending one as its timer would."""

    def __init__(self):
        self.delays, self.pending, self.cancelled = [], [], 0

    def __call__(self, delay, fn):
        self.delays.append(delay)
        self.pending.append(fn)

        def cancel():
            self.cancelled += 1
        return cancel

    def fire(self):
        self.pending.pop(0)()


FLAKY = Problem("LeaderWorkerSetMissing", "install it")
BAD_SPEC = Problem("InvalidSpec", "fix it", retry=False)


def test_run_pass_classifies_like_the_kopf_handler():
    assert run_pass(Script(Outcome()), "ns", "x", "T") is None
    f = run_pass(Script(ConnectionError("refused")), "ns", "x", "T")
    assert f.retry and "ConnectionError: refused" in f.message
    assert run_pass(Script(Outcome(problem=FLAKY)), "ns", "x", "T").retry
    assert not run_pass(Script(Outcome(problem=BAD_SPEC)), "ns", "x", "T").retry


def test_child_events_and_resync_retry_with_the_same_backoff_until_a_success():
    reconcile = Script(ConnectionError("refused"), Outcome(problem=FLAKY), RuntimeError("500"), Outcome(), 
                       ConnectionError("again"))
    timers = Timers()
    r = Retrier(reconcile, timer=timers)
    r.run("ns", "x", "LeaderWorkerSet")
    timers.fire()
    timers.fire()
    timers.fire()  # succeeds
    assert timers.delays == [backoff(0), backoff(1), backoff(2)] == [1, 2, 4]
    assert not timers.pending and [c[2] for c in reconcile.calls] == ["LeaderWorkerSet"] * 4
    r.run("ns", "x", "Resync")  # a new failure after the success starts again at the first delay
    assert timers.delays[-1] == 1


def test_no_retry_for_a_spec_problem_and_a_new_event_replaces_the_pending_retry():
    timers = Timers()
    r = Retrier(Script(Outcome(problem=BAD_SPEC)), timer=timers)
    assert not r.run("ns", "x", "Service").retry and timers.delays == []
    r = Retrier(Script(ConnectionError("x"), Outcome()), timer=timers)
    r.run("ns", "y", "Service")
    r.run("ns", "y", "Resync")  # ran before the timer: the pending retry is cancelled
    assert timers.cancelled == 1


def test_forget_and_stop_cancel_pending_retries():
    timers = Timers()
    r = Retrier(Script(ConnectionError("x"), ConnectionError("x")), timer=timers)
    r.run("ns", "a", "Service")
    r.forget("ns", "a")
    assert timers.cancelled == 1
    r.run("ns", "b", "Service")
    r.stop()
    assert timers.cancelled == 2


def test_triggers_during_a_pass_fold_into_one_more_pass_and_other_objects_run_at_once():
    r: Retrier
    calls = []

    def reconcile(namespace, name, *, trigger):
        calls.append((name, trigger))
        if len(calls) == 1:  # events that arrive while x's first pass runs (re-entrant here, threads in kopf)
            assert r.run("ns", "x", "Pod") is None
            assert r.run("ns", "x", "Service") is None
            r.run("ns", "y", "Pod")  # another object is not held back
            assert r.run("ns", "x", "LeaderWorkerSet") is None
        return Outcome()

    r = Retrier(reconcile, timer=Timers())
    assert r.run("ns", "x", "Resync") is None
    assert calls == [("x", "Resync"), ("y", "Pod"), ("x", "LeaderWorkerSet")]
    r.run("ns", "x", "Pod")  # nothing running any more: a pass of its own
    assert calls[-1] == ("x", "Pod") and len(calls) == 4


def test_a_pass_that_raises_does_not_leave_the_object_marked_running():
    class Boom(BaseException):
        pass

    answers = [Boom(), Outcome()]

    def reconcile(namespace, name, *, trigger):
        a = answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a

    r = Retrier(reconcile, timer=Timers())
    try:
        r.run("ns", "x", "Pod")
    except Boom:
        pass
    assert r.run("ns", "x", "Pod") is None and not answers  # ran, was not folded into a dead pass
