"""The real SMG (`smg` from PyPI, pinned in the test extra) in front of 3 real runtime servers on
loopback: cache-aware routing beats round robin on a shared-prefix workload that does not fit in one
worker's KV pool, and a worker killed mid-run loses no request that had not started."""
from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.support.router import SmgRouter
from tests.support.routing_workload import run, start_servers

# smg is in the test extra: without it SmgRouter fails with the install command (no skip)
pytestmark = pytest.mark.runtime


def test_cache_aware_beats_round_robin(tiny_model, tmp_path):
    results = {r["policy"]: r for r in run(tiny_model, tmp_path)}
    aware, rr = results["cache_aware"], results["round_robin"]
    for r in (aware, rr):
        assert r["ok"] == r["requests"], r  # every request succeeds
        assert all(p > 0 for p in r["per_worker_prompt_tokens"]), r  # every worker gets traffic
    assert aware["hit_rate"] > rr["hit_rate"], results


def _stream(url: str, model: str, out: dict, key: int, started: threading.Event) -> None:
    body = {"model": model, "prompt": f"stream {key}", "max_tokens": 1800, "temperature": 0,
            "ignore_eos": True, "stream": True}
    try:
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=120) as r:
            out[key] = {"status": r.status_code, "done": False, "error": None, "chunks": 0}
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    out[key]["done"] = True
                elif line.startswith("data: "):
                    out[key]["chunks"] += 1
                    if "error" in json.loads(line[6:]):
                        out[key]["error"] = "error event"
                    if out[key]["chunks"] == 2:
                        started.set()
    except httpx.HTTPError as e:
        out.setdefault(key, {"done": False, "chunks": 0})["error"] = type(e).__name__
    started.set()


def test_killed_worker_loses_no_new_request(tiny_model, tmp_path):
    servers = start_servers(tiny_model, 3, 4096, tmp_path)
    router = None
    try:
        router = SmgRouter("round_robin", tmp_path / "smg.log", worker_urls=[s.url for s in servers])
        router.wait_workers(3)
        model = httpx.get(servers[0].url + "/v1/models").json()["data"][0]["id"]
        out: dict = {}
        threads = []
        for k in range(6):  # round robin: two streams on each worker
            started = threading.Event()
            t = threading.Thread(target=_stream, args=(router.url, model, out, k, started))
            t.start()
            assert started.wait(60), out
            threads.append(t)
        victim = servers[0]
        running = victim.metrics()["sglang:num_requests_running"]
        victim.proc.kill()  # SIGKILL: no drain, connections reset
        for t in threads:
            t.join(120)
        # The victim's streams, and only those, end with an error the client sees (SMG sends an
        # error event; a reset connection would raise); the others run to the end.
        failed = [k for k, v in out.items() if v["error"]]
        assert len(failed) == running == 2, out
        assert all(v["done"] and v["chunks"] > 1000 for k, v in out.items() if k not in failed), out
        codes = [httpx.post(router.url + "/v1/completions", timeout=60, json={
            "model": model, "prompt": f"after {i}", "max_tokens": 2}).status_code for i in range(12)]
        assert codes == [200] * 12, (codes, router.log())  # not started yet: none lost
    finally:
        if router is not None:
            router.stop()
        for s in servers:
            s.stop()
