"""/health's decision: phases, and the watchdog that reports a stuck scheduler."""
from radix_runtime.core.protocol import EngineStats
from radix_runtime.server.health import health_body
from radix_runtime.server.state import DRAINING, FAILED, LOADING, READY


def stats(running=0, waiting=0, last_step=100.0):
    return EngineStats(num_running_reqs=running, num_waiting_reqs=waiting, token_usage=0.1,
                       cache_usage=0.05, total_kv_tokens=1000, prompt_tokens_total=0,
                       cached_tokens_total=0, computed_prefill_tokens_total=0,
                       generation_tokens_total=0, num_retractions_total=0,
                       last_step_time=last_step)


def body(phase, s, now=101.0, **kw):
    return health_body(phase, s, radix_cache=True, watchdog_timeout=300, now=now, **kw)


def test_phases():
    assert body(LOADING, None, detail="reading weights") == (503, {
        "status": "loading", "model_loaded": False, "radix_cache_ready": False,
        "reason": "model not loaded (reading weights)"})
    code, b = body(FAILED, stats(), detail="OSError: no config.json")
    assert code == 503 and b["status"] == "unhealthy" and "no config.json" in b["reason"]
    code, b = body(READY, stats(running=2, waiting=1))
    assert code == 200 and (b["num_requests_running"], b["num_requests_waiting"]) == (2, 1)
    assert b["radix_cache_usage_perc"] == 0.05 and b["model_loaded"] is True
    assert body(DRAINING, stats())[0] == 503


def test_watchdog_only_fires_with_work_queued():
    assert body(READY, stats(running=1), now=100.0 + 301)[0] == 503
    assert body(READY, stats(waiting=1), now=100.0 + 299)[0] == 200
    assert body(READY, stats(), now=100.0 + 10_000)[0] == 200  # idle is not stuck
