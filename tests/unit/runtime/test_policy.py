"""Pure scheduling decisions: queue order (lpm with aging, fcfs), admission, retraction order."""
from __future__ import annotations

from radix_runtime.core.request import SamplingParams
from radix_runtime.scheduler import policy
from radix_runtime.scheduler.request import Req


def _req(rid, arrival, match_len=0, wait=0, priority=0, prompt=10, out=0, max_new=16):
    r = Req(rid, list(range(prompt)), SamplingParams(max_new_tokens=max_new), priority=priority, arrival=arrival)
    r.match_len, r.wait_steps, r.output_ids = match_len, wait, list(range(out))
    return r


def test_lpm_prefers_longest_prefix_then_arrival():
    a, b, c = _req("a", 1, match_len=0), _req("b", 2, match_len=50), _req("c", 3, match_len=50)
    assert [r.rid for r in policy.order_queue([a, b, c], "lpm")] == ["b", "c", "a"]


def test_aging_puts_starving_requests_first_in_arrival_order():
    old = _req("old", 1, match_len=0, wait=policy.MAX_WAIT_ROUNDS)
    older = _req("older", 0, match_len=0, wait=policy.MAX_WAIT_ROUNDS + 5)
    hot = _req("hot", 2, match_len=500)
    assert [r.rid for r in policy.order_queue([hot, old, older], "lpm")] == ["older", "old", "hot"]


def test_fcfs_and_priority():
    a, b = _req("a", 1), _req("b", 2, priority=5, match_len=0)
    c = _req("c", 0, match_len=99)
    assert [r.rid for r in policy.order_queue([a, b, c], "fcfs")] == ["b", "c", "a"]
    assert [r.rid for r in policy.order_queue([a, b, c], "lpm")] == ["b", "c", "a"]


def test_admission():
    # nothing running: only the chunk has to fit
    assert policy.can_admit(100, 1000, 100, 0, False, 0.5)
    assert not policy.can_admit(101, 101, 100, 0, False, 0.5)
    # something running: the newcomer's expected decode and the running reserve count too
    assert policy.can_admit(50, 150, 200, 100, True, 0.5)  # 50 + 50 + 100 <= 200
    assert not policy.can_admit(50, 152, 200, 100, True, 0.5)
    running = [_req("r", 0, prompt=10, out=6, max_new=16)]
    running[0].kv_len = running[0].fill_len - 1
    assert policy.reserved_tokens(running, 0.5) == 5  # 10 tokens left to decode


def test_retract_order_prefers_least_progress_then_longest_prompt():
    a = _req("a", 0, out=10, prompt=5)
    b = _req("b", 1, out=2, prompt=5)
    c = _req("c", 2, out=2, prompt=50)
    assert [r.rid for r in policy.retract_order([a, b, c])] == ["c", "b", "a"]
