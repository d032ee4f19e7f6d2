"""Tensor and pipeline parallelism across processes started the way LeaderWorkerSet starts pods
(LWS_LEADER_ADDRESS / LWS_GROUP_SIZE / LWS_WORKER_INDEX only): greedy outputs token for token equal
to one process on the same checkpoint, radix hits included; and a group that loses a rank reports
503 and goes away completely."""
from __future__ import annotations

import time

import httpx
import pytest

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
    t0 = time.monotonic()
    import os, signal
    os.kill(victim, signal.SIGKILL)
    seen = {0: set(), 1: set()}
    while time.monotonic() - t0 < 20 and any(p.poll() is None for p in group.procs):
        for pod in (0, 1):
            if group.procs[pod].poll() is None:
                seen[pod].add(group.health(pod))
        time.sleep(0.05)
    took = time.monotonic() - t0
    codes = [p.poll() for p in group.procs]
    assert codes[0] not in (None, 0) and codes[1] not in (None, 0), (codes, group.log())
    assert took < 10, took  # heartbeat timeout 3 s + grace 1 s, with slack for a loaded machine
    assert 503 in seen[0] and 503 in seen[1], seen
    deadline = time.monotonic() + 5
    while group.leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group.leftovers() == []


def _parent(pid: int) -> int:
    from pathlib import Path
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
