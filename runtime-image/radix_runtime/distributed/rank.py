"""One rank process: join the group, then lead (rank 0: HTTP + scheduler) or follow.

Rank 0 owns the rendezvous TCPStore (at --dist-init-addr), which also carries the heartbeats. The
group and the model shard are set up inside the server's background load, so /health answers
"loading" meanwhile; followers set up the same way and then run the leader's ops. A follower that
gets SIGTERM keeps following (its leader may still be draining requests) and exits 0 when the
leader stops or goes away.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import torch
import torch.distributed as dist

from ..core.config import EngineConfig, ServerConfig
from ..engine.radix_engine import RadixEngine
from ..executor.group_runner import LeaderRunner, StageRunner, follow
from ..executor.model_runner import ModelRunner
from ..executor.shard import choose_device, load_shard
from ..parallel import group as groups
from ..server.app import serve
from .follower_http import serve_health
from .heartbeat import OK, GroupHealth
from .launcher import ENV_PARENT_PID, Placement, die_with_parent, spawn_local_ranks, watch_children

log = logging.getLogger("radix_runtime.rank")


def run(config: EngineConfig, server: ServerConfig, p: Placement, local_rank: int, argv: list[str],
        dist_timeout: float, heartbeat_timeout: float) -> int:
    """One rank process of `p`'s group (`argv` starts this pod's other ranks); the exit code."""
    if "OMP_NUM_THREADS" not in os.environ:  # the node's cores, shared among its ranks
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // p.local_ranks))
    rank = p.rank(local_rank)
    if local_rank:
        die_with_parent()
        if os.getppid() != int(os.environ.get(ENV_PARENT_PID, os.getppid())):
            return 1  # the launcher died before we could ask to die with it
    device = choose_device(config.device, local_rank)
    config.device = str(device)
    health = GroupHealth("127.0.0.1" if rank == 0 else p.host, p.port, rank, p.world_size,
                         heartbeat_timeout)
    children = spawn_local_ranks(p, argv) if local_rank == 0 else []
    watch_children(children, health.fail)
    log.info("rank %d of %d (tp %d x pp %d, node %d/%d), rendezvous at %s:%d", rank, p.world_size,
             p.tp, p.pp, p.node_rank, p.nnodes, p.host, p.port)
    if rank == 0:
        store = dist.TCPStore(p.host, p.port, p.world_size, is_master=True,
                              timeout=timedelta(seconds=dist_timeout), wait_for_workers=False)
        health.start()
        code = _lead(config, server, store, p, device, health, dist_timeout)
    else:
        signal.signal(signal.SIGTERM, lambda *_: setattr(health, "terminating", True))
        if local_rank == 0:  # the pod's probes get answers ("starting") while rank 0 is awaited
            serve_health(health, server.host, server.port)
        code = _follow(config, p, rank, device, health, dist_timeout)
    for c in children:  # they got the leader's stop too; the pod ends when all its ranks have
        try:
            c.wait(timeout=30)
        except subprocess.TimeoutExpired:
            c.kill()
    # skip interpreter teardown: destroying a process group whose peers are leaving too can
    # abort (std::terminate in gloo's destructors) and turn a clean stop into a crash
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _join(store, p: Placement, rank: int, device, health, timeout: float) -> groups.Group:
    return groups.init(dist.PrefixStore("pg", store), rank, p.tp, p.pp, device, timeout, health)


def _lead(config, server, store, p, device, health, timeout: float) -> int:
    def factory(cfg):
        g = _join(store, p, 0, device, health, timeout)
        engine = RadixEngine(cfg, lambda runner: LeaderRunner(StageRunner(runner, g), health.fail))
        health.set_state(OK)
        return engine

    return asyncio.run(serve(server, config, factory))


def _follow(config, p, rank, device, health, timeout: float) -> int:
    try:
        store = dist.TCPStore(p.host, p.port, p.world_size, is_master=False,
                              timeout=timedelta(seconds=timeout))
        g = _join(store, p, rank, device, health, timeout)
        health.start()
        torch.manual_seed(config.random_seed)
        model, _, _, pool = load_shard(config, device)
        stage = StageRunner(ModelRunner(model, pool, device, config.attention_backend), g)
        log.info("rank %d ready: layers [%d, %d), %d KV slots", rank, model.model.start,
                 model.model.end, pool.size)
        follow(stage)
    except Exception as e:
        log.exception("rank %d failed", rank)
        health.fail(f"rank {rank}: {type(e).__name__}: {e}")
        threading.Event().wait()  # the exit comes from health's grace timer
    log.info("rank %d: the leader stopped the group", rank)
    return 0
