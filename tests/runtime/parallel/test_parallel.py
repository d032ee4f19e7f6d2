"""Tensor and pipeline parallelism across processes started the way LeaderWorkerSet starts pods
(LWS_LEADER_ADDRESS / LWS_GROUP_SIZE / LWS_WORKER_INDEX only): greedy outputs token for token equal
to one process on the same checkpoint, radix hits included; and a group that loses a rank reports
503 and goes away completely."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.waiting import wait_for

from .workload import assert_same, run_workload


@pytest.mark.parametrize("arch,tp,pp,pods", [
    ("llama", 2, 1, 2),  # tp=2 across two pods
    ("qwen2", 1, 2, 2),  # pp=2: tied embeddings on stage 0, LM head on stage 1
    ("llama", 2, 2, 4),  # tp=2 x pp=2, four pods
    ("qwen3", 4, 1, 1),  # tp=4 > 2 KV heads (replicated), one pod running four ranks
], ids=["tp2", "pp2", "tp2xpp2", "tp4-one-pod"])
def test_group_matches_one_process(reference, start_pods, arch, tp, pp, pods):
    group = start_pods(arch, tp, pp, pods)
    got = run_workload(group.url)
    assert_same(got, reference(arch))
    assert got[1]["cached"] > 0  # the second prompt hit the first one's prefix
    assert len(group.pids) == tp * pp  # one process per rank, no more
    assert group.stop() == [0] * pods, group.log()
    assert group.left == []


def test_a_dead_rank_takes_the_whole_group_down(start_pods):
    # tp=2 x pp=2 over two pods of two ranks each; kill the second pod's child rank (rank 3)
    group = start_pods("llama", 2, 2, 2)
    follower_launcher = group.procs[1].pid
    victim = next(p for p in group.pids if p not in (group.procs[0].pid, follower_launcher)
                  and _parent(p) == follower_launcher)
    assert httpx.get(group.url + "/health").json()["status"] == "healthy"
    os.kill(victim, signal.SIGKILL)
    took, seen = _watch_exit(group, [0, 1])
    assert took < 10, took  # found at once (the pod sees its child die), plus the 1 s grace
    assert 503 in seen[0] and 503 in seen[1], seen
    _assert_nothing_left(group)


def test_a_frozen_rank_is_found_by_its_silence(start_pods):
    group = start_pods("llama", 2, 1, 2)
    os.kill(group.procs[1].pid, signal.SIGSTOP)  # alive, sockets open, but no heartbeat
    try:
        took, seen = _watch_exit(group, [0])
    finally:
        os.kill(group.procs[1].pid, signal.SIGKILL)  # as Kubernetes would delete the pod
    assert 3 <= took < 10, took  # the 3 s heartbeat timeout + grace
    assert 503 in seen[0], seen


def test_followers_leave_when_the_leader_dies(start_pods):
    group = start_pods("llama", 1, 2, 2)
    os.kill(group.procs[0].pid, signal.SIGKILL)
    t0 = time.monotonic()
    assert group.procs[1].wait(10) != 0
    assert time.monotonic() - t0 < 10
    _assert_nothing_left(group)


def _watch_exit(group, pods: list[int], limit: float = 20):
    """Poll the pods' /health until they exit: (seconds taken, {pod: statuses seen})."""
    t0 = time.monotonic()
    seen: dict[int, set] = {i: set() for i in pods}
    while time.monotonic() - t0 < limit and any(group.procs[i].poll() is None for i in pods):
        for i in pods:
            if group.procs[i].poll() is None:
                seen[i].add(group.health(i))
        time.sleep(0.05)
    took = time.monotonic() - t0
    codes = [group.procs[i].poll() for i in pods]
    assert all(c not in (None, 0) for c in codes), (codes, group.log())
    return took, seen


def _assert_nothing_left(group, within: float = 5) -> None:
    wait_for(lambda: not group.leftovers(), within, what="every process of the group to exit")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
