"""SGLang-native and admin routes on a real server: /generate (single, batch, n, stream,
logprobs), /batch, /extend, health, model/server info, flush_cache, version."""
import json

import httpx
import pytest

pytestmark = pytest.mark.runtime  # starts real server processes


def sse_events(response: httpx.Response) -> list:
    events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def gen(server, body, method="POST"):
    r = httpx.request(method, server.url + "/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r


def test_generate_single_put_and_meta(server):
    body = {"text": "The operator watches its custom resources",
            "sampling_params": {"max_new_tokens": 5, "temperature": 0}}
    first = gen(server, body).json()
    second = gen(server, body, method="PUT")
    again = second.json()
    assert first["text"] == again["text"] and len(first["output_ids"]) == 5
    info = again["meta_info"]
    assert info["finish_reason"] == {"type": "length", "length": 5}
    assert info["prompt_tokens"] == first["meta_info"]["prompt_tokens"]
    assert info["completion_tokens"] == 5
    assert info["cached_tokens"] > 0 and info["e2e_latency"] > 0
    assert again["meta"]["radix_cache_hit"] is True and again["meta"]["rid"] == info["id"]
    assert second.headers["X-SGLang-Cache-Hit"] == "true"
    assert int(second.headers["X-SGLang-Cached-Tokens"]) == info["cached_tokens"]


def test_generate_batch_per_item_params_and_n(server):
    r = gen(server, {"input_ids": [[1, 5, 6, 7], [1, 8, 9]], "rid": ["b-a", "b-b"],
                     "sampling_params": [{"max_new_tokens": 2, "temperature": 0},
                                         {"max_new_tokens": 3, "temperature": 0}]}).json()
    assert [x["meta_info"]["id"] for x in r] == ["b-a", "b-b"]
    assert [len(x["output_ids"]) for x in r] == [2, 3]
    n = gen(server, {"text": "hello", "sampling_params": {"n": 3, "max_new_tokens": 2}}).json()
    assert isinstance(n, list) and len(n) == 3


def test_generate_max_new_tokens_zero_prefills(server):
    r = gen(server, {"input_ids": list(range(10, 60)), "sampling_params": {"max_new_tokens": 0}})
    assert r.json()["output_ids"] == [] and r.json()["meta_info"]["completion_tokens"] == 0
    hit = gen(server, {"input_ids": list(range(10, 60)) + [7],
                       "sampling_params": {"max_new_tokens": 1}}).json()
    assert hit["meta_info"]["cached_tokens"] == 50


def test_generate_stream_is_cumulative(server):
    body = {"text": "Once upon a time", "sampling_params": {"max_new_tokens": 8, "temperature": 0}}
    whole = gen(server, body).json()
    with httpx.stream("POST", server.url + "/generate", json={**body, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    texts = [e["text"] for e in events]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))  # cumulative, not deltas
    assert texts[-1] == whole["text"] and events[-1]["output_ids"] == whole["output_ids"]
    assert events[-1]["meta_info"]["finish_reason"] == {"type": "length", "length": 8}
    assert all(e["meta_info"]["finish_reason"] is None for e in events[:-1])


def test_generate_logprobs_shape(server):
    r = gen(server, {"input_ids": [1, 20, 30, 40], "return_logprob": True, "top_logprobs_num": 2,
                     "return_text_in_logprobs": True,
                     "sampling_params": {"max_new_tokens": 3, "temperature": 0}}).json()
    info = r["meta_info"]
    assert len(info["output_token_logprobs"]) == 3
    for (lp, tid, text), out_id in zip(info["output_token_logprobs"], r["output_ids"]):
        assert lp <= 0 and tid == out_id and isinstance(text, str)
    assert [len(top) for top in info["output_top_logprobs"]] == [2, 2, 2]
    # greedy: the chosen token is the best of the top-k
    assert [top[0][1] for top in info["output_top_logprobs"]] == r["output_ids"]


def test_batch_route(server):
    r = httpx.post(server.url + "/batch", json={"requests": [
        {"text": "Translate to French: Hello world", "sampling_params": {"max_new_tokens": 3}},
        {"text": "Translate to Spanish: Hello world", "sampling_params": {"max_new_tokens": 4}},
    ]}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["meta"]["output_tokens"] for x in body["responses"]] == [3, 4]
    meta = body["batch_meta"]
    assert (meta["total_requests"], meta["successful"]) == (2, 2)
    assert 0 <= meta["avg_radix_cache_hit_rate"] <= 1 and meta["total_time_ms"] > 0


def test_extend_continues_a_conversation_from_the_cache(server):
    first = gen(server, {"text": "User: What is the capital of France? Assistant:",
                         "sampling_params": {"max_new_tokens": 6, "temperature": 0}}).json()
    rid = first["meta"]["rid"]
    history = first["meta_info"]["prompt_tokens"] + 6
    r = httpx.post(server.url + "/extend", json={
        "rid": rid, "text": "\nUser: And of Spain? Assistant:",
        "sampling_params": {"max_new_tokens": 4, "temperature": 0}}, timeout=60)
    assert r.status_code == 200, r.text
    ext = r.json()
    assert ext["meta"]["rid"] == rid and ext["meta"]["radix_cache_hit"] is True
    assert ext["meta_info"]["prompt_tokens"] == history + ext["meta"]["input_tokens"]
    assert ext["meta_info"]["cached_tokens"] >= history - 1
    assert ext["meta"]["context_length"] == ext["meta_info"]["prompt_tokens"] + 4
    # and it keeps going
    again = httpx.post(server.url + "/extend", json={"rid": rid, "text": " Thanks!",
                                                     "sampling_params": {"max_new_tokens": 2}})
    assert again.json()["meta_info"]["prompt_tokens"] > ext["meta"]["context_length"]
    missing = httpx.post(server.url + "/extend", json={"rid": "nope", "text": "x"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]


def test_health_and_info_routes(server, tiny_model):
    h = httpx.get(server.url + "/health")
    assert h.status_code == 200
    body = h.json()
    assert (body["status"], body["model_loaded"], body["radix_cache_ready"]) == ("healthy", True,
                                                                               True)
    assert {"radix_cache_usage_perc", "num_requests_running", "num_requests_waiting"} <= body.keys()
    served = server.metrics()["sglang:e2e_request_latency_seconds_count"]
    hg = httpx.get(server.url + "/health_generate", timeout=30)
    assert hg.status_code == 200 and hg.json()["generated_tokens"] == 1
    # a probe's generation is not a request: an idle fleet reports none
    assert server.metrics()["sglang:e2e_request_latency_seconds_count"] == served
    info = httpx.get(server.url + "/get_model_info").json()
    assert info["model_path"] == str(tiny_model) and info["is_generation"] is True
    for path in ("/server_info", "/get_server_info"):
        si = httpx.get(server.url + path).json()
        assert si["model_path"] == str(tiny_model) and si["version"]
        assert si["internal_states"][0]["total_kv_tokens"] > 0
    assert httpx.get(server.url + "/version").json()["version"]
    assert httpx.post(server.url + "/flush_cache").status_code == 200
    cold = gen(server, {"input_ids": [1, 20, 30, 40], "sampling_params": {"max_new_tokens": 1}})
    assert cold.json()["meta_info"]["cached_tokens"] == 0
    assert httpx.get(server.url + "/flush_cache").status_code == 200


def test_health_is_503_while_loading(launch, tiny_model):
    s = launch(tiny_model, wait=False)
    s.wait_ready()
    assert 503 in s.health_seen, s.health_seen  # served HTTP before the model was loaded
    assert s.stop() == 0


def test_stream_interval_extend_stream_and_chat_n_stream(server):
    body = {"input_ids": [1, 40, 50], "stream": True,
            "sampling_params": {"max_new_tokens": 9, "stream_interval": 4, "ignore_eos": True}}
    with httpx.stream("POST", server.url + "/generate", json=body) as r:
        events = sse_events(r)
    counts = [e["meta_info"]["completion_tokens"] for e in events]
    assert counts[-1] == 9 and events[-1]["meta_info"]["finish_reason"] == {"type": "length", "length": 9}
    # Every chunk but the last comes at least stream_interval tokens after the one before; a loaded
    # machine may coalesce updates (the engine hands a slow reader the latest state), so [4, 8, 9]
    # is typical but [8, 9] or [9] are legal too, while [1, 2, ...] is not.
    assert counts == sorted(set(counts))
    assert all(b - a >= 4 for a, b in zip([0] + counts[:-2], counts[:-1]))
    rid = events[-1]["meta"]["rid"]
    with httpx.stream("POST", server.url + "/extend", json={
            "rid": rid, "input_ids": [60, 70], "stream": True,
            "sampling_params": {"max_new_tokens": 3}}) as r:
        ext = sse_events(r)
    assert ext[-1]["meta_info"]["prompt_tokens"] == 3 + 9 + 2
    assert ext[-1]["meta_info"]["cached_tokens"] >= 11
    chunks = []
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "hi"}], "n": 2, "max_tokens": 4,
            "temperature": 0, "stream": True}) as r:
        chunks = sse_events(r)
    texts = {0: "", 1: ""}
    for c in chunks:
        for choice in c["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
    assert texts[0] == texts[1] != ""
