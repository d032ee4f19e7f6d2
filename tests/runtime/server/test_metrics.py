"""The windowed hit rate and the Prometheus rendering on a per-server registry."""
from radix_runtime.core.protocol import EngineStats
from radix_runtime.server.metrics import HitRateWindow, ServerMetrics


def test_window_covers_recent_prefill_only():
    w = HitRateWindow(window_tokens=100)
    assert w.rate == 0.0
    w.add(100, 0)
    w.add(100, 100)
    assert w.rate == 1.0  # the cold request slid out of the window
    w.add(50, 0)
    assert w.prompt_tokens == 150 and abs(w.rate - 100 / 150) < 1e-9


def test_window_keeps_everything_while_small():
    w = HitRateWindow(window_tokens=10_000)
    for prompt, cached in [(544, 0)] + [(544, 512)] * 7:
        w.add(prompt, cached)
    assert abs(w.rate - 7 * 512 / (8 * 544)) < 1e-9


def test_two_servers_in_one_process_have_separate_registries():
    stats = EngineStats(num_running_reqs=2, num_waiting_reqs=3, token_usage=0.5, cache_usage=0.25,
                        total_kv_tokens=1000, prompt_tokens_total=10, cached_tokens_total=4,
                        computed_prefill_tokens_total=6, generation_tokens_total=7,
                        num_retractions_total=0, last_step_time=0.0)
    a, b = ServerMetrics("a", lambda: stats), ServerMetrics("b", lambda: None)
    a.observe_prefill(10, 4, 0.01)
    a.observe_finish(0.2)
    text = a.render().decode()
    for line in ['sglang:num_requests_waiting{model_name="a"} 3.0',
                 'sglang:num_queue_reqs{model_name="a"} 3.0',
                 'sglang:cached_tokens_total{model_name="a"} 4.0',
                 'sglang:cache_hit_rate{model_name="a"} 0.4',
                 'sglang:radix_cache_hit_rate{model_name="a"} 0.4',
                 'sglang:time_to_first_token_seconds_count{model_name="a"} 1.0',
                 'sglang:request_duration_seconds_count{model_name="a"} 1.0']:
        assert line in text, line
    assert 'model_name="a"' not in b.render().decode()


def test_inter_token_latency_counts_each_token_and_process_start_time_is_exported():
    m = ServerMetrics("a", lambda: None)
    m.observe_tokens(0.03, 3)  # three tokens in one step: three observations of 10 ms
    m.observe_tokens(0.02, 1)
    text = m.render().decode()
    for line in ['sglang:inter_token_latency_seconds_count{model_name="a"} 4.0',
                 'sglang:inter_token_latency_seconds_bucket{le="0.01",model_name="a"} 3.0',
                 'sglang:inter_token_latency_seconds_bucket{le="0.02",model_name="a"} 4.0']:
        assert line in text, line
    assert "\nprocess_start_time_seconds " in text  # a new value per process: group restarts
