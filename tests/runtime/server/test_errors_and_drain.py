"""Bad input, auth, overload, disconnects and shutdown on real servers: the right status and the
`{"error": {"message": ...}}` shape, never a 500."""
import asyncio
import secrets
import threading
import time
from pathlib import Path

import httpx
import pytest

from sglang_operator.autoscale.scrape import Leader, scrape
from tests.support.server import RuntimeServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.runtime  # starts real server processes

LONG = {"max_new_tokens": 1900, "ignore_eos": True, "temperature": 0}


@pytest.mark.parametrize("path,body,param,needle", [
    ("/generate", b'{"text": "a", ', None, "malformed JSON"),
    ("/generate", b"", None, "empty"),
    ("/generate", b'{"text": 5}', "text", "valid string"),
    ("/generate", b'{"text": "a", "sampling_params": {"max_new_tokens": -1}}',
     "sampling_params.max_new_tokens", "greater than or equal to 0"),
    ("/generate", b'{"text": "a", "sampling_params": {"temperature": "hot"}}',
     "sampling_params.temperature", "valid number"),
    ("/generate", b'{"text": "a", "sampling_params": {"stop": {"x": 1}}}',
     "sampling_params.stop", "valid string"),
    ("/generate", b'{"text": "a", "sampling_params": {"json_schema": "{nope"}}',
     "sampling_params.json_schema", "not valid JSON"),
    ("/generate", b'{"text": "' + b"hello " * 2100 + b'"}', "text", "context length"),
    ("/generate", b'{"input_ids": [1, 2], "sampling_params": {"max_new_tokens": 5000}}',
     "sampling_params.max_new_tokens", "context length"),
    ("/generate", b'{"input_ids": [1, 100000]}', "input_ids", "vocabulary"),
    ("/generate", b'{"input_ids": []}', "input_ids", "empty"),
    ("/generate", b'{"text": ["a", "b"], "sampling_params": [{}]}', "sampling_params", "entries"),
    ("/generate", b'{"text": ["a", "b"], "rid": "same"}', "rid", "unique"),
    ("/v1/completions", b'{"prompt": "a", "max_tokens": "ten"}', "max_tokens", "valid integer"),
    ("/v1/completions", b'{"prompt": "a", "stop": 7}', "stop", "valid string"),
    ("/v1/completions", b'{"prompt": "' + b"hello " * 2100 + b'"}', "prompt", "context length"),
    ("/v1/chat/completions", b'{"messages": "hi"}', "messages", "valid array"),
    ("/v1/chat/completions", b'{"messages": [{"role": "wizard", "content": "hi"}]}',
     "messages.0.role", "Input should be"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "n": 0}',
     "n", "greater than or equal to 1"),
    ("/v1/embeddings", b'{"input": 3.5}', "input", "Input should be"),
    ("/v1/chat/completions/vision", b'{"messages": [{"role": "user", "content": [{"type": '
     b'"image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}',
     "messages.image_url", "takes no image input"),
    ("/generate", b'{"text": "a", "image_data": "data:image/png;base64,AAAA"}', "image_data",
     "takes no image input"),
])
def test_bad_input_is_a_400_naming_the_field(server, path, body, param, needle):
    r = httpx.post(server.url + path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["param"] == param and err["code"] == 400
    if param:
        assert param in err["message"]


def test_unknown_route_and_method_keep_the_error_shape(server):
    assert httpx.get(server.url + "/nope").json()["error"]["code"] == 404
    assert httpx.get(server.url + "/generate").json()["error"]["code"] == 405


def test_stream_error_before_output_is_plain_http(server):
    r = httpx.post(server.url + "/generate", json={"input_ids": [1, 2], "stream": True,
                                                   "sampling_params": {"max_new_tokens": 9999}})
    assert r.status_code == 400 and "max_new_tokens" in r.json()["error"]["message"]


def test_failed_load_exits_nonzero_with_the_reason(tmp_path):
    s = RuntimeServer(tmp_path, (), tmp_path / "server.log")  # an empty directory is no model
    with pytest.raises(RuntimeError, match="server exited with 1"):
        s.wait_ready()
    assert "model failed to load" in s.log()
    s.stop()


def test_api_key(launch, tiny_model):
    s = launch(tiny_model, "--api-key", "sekret")
    body = {"text": "hi", "sampling_params": {"max_new_tokens": 1}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
        r = httpx.post(s.url + "/generate", json=body, headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    assert httpx.get(s.url + "/v1/models").status_code == 401
    ok = httpx.post(s.url + "/generate", json=body, headers={"Authorization": "Bearer sekret"})
    assert ok.status_code == 200
    for open_path in ("/health", "/metrics", "/health_generate"):
        assert httpx.get(s.url + open_path, timeout=30).status_code == 200
    assert "sekret" not in httpx.get(s.url + "/server_info",
                                     headers={"Authorization": "Bearer sekret"}).text
    import openai
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert s.stop() == 0


def test_api_key_from_the_environment_stays_out_of_argv_logs_and_server_info(launch, tiny_model):
    """What a Secret-backed env var (spec.apiKeySecret) gives the pod: SGLANG_API_KEY is the key,
    and it shows in neither the process list, the log (debug level, every request logged) nor
    /server_info; probes and the autoscaler's scrape need no key."""
    key = "k-" + secrets.token_hex(16)
    s = launch(tiny_model, "--log-level", "debug", "--log-requests", env={"SGLANG_API_KEY": key})
    body = {"text": "hi", "sampling_params": {"max_new_tokens": 1}}
    assert httpx.post(s.url + "/generate", json=body).status_code == 401
    assert httpx.get(s.url + "/server_info").status_code == 401
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.post(s.url + "/generate", json=body, headers=auth).status_code == 200
    for path in ("/server_info", "/get_server_info"):
        r = httpx.get(s.url + path, headers=auth)
        assert r.status_code == 200 and key not in r.text and "api_key" not in r.json()
    for open_path in ("/health", "/health_generate", "/metrics"):
        assert httpx.get(s.url + open_path, timeout=30).status_code == 200
    # the operator's autoscaler scrape, as it runs (no credentials), still reads the queue
    assert asyncio.run(scrape([Leader("leader", s.url + "/metrics")], "sglang:num_requests_waiting")) == {"leader": 0.0}
    cmdline = Path(f"/proc/{s.proc.pid}/cmdline").read_bytes()
    assert b"radix_runtime.launch_server" in cmdline and key.encode() not in cmdline
    assert s.stop() == 0
    log = s.log_path.read_text(errors="replace")
    assert "POST /generate" in log and key not in log


def first_event(lines) -> str:
    """The first SSE event. Keep `lines` referenced while the stream should stay open: once the
    iterator is garbage-collected httpx closes the connection, which the server sees as a client
    disconnect (and aborts the request)."""
    return next(line for line in lines if line.startswith("data: "))


def test_disconnect_mid_stream_aborts_and_frees(server):
    before = server.metrics()
    with httpx.stream("POST", server.url + "/generate", timeout=60,
                      json={"input_ids": [1, 2, 3], "stream": True, "sampling_params": LONG}) as r:
        first_event(r.iter_lines())
    # The client is gone: the request must stop running long before 1900 tokens.
    wait_for(lambda: server.metrics()["sglang:num_requests_running"] == 0, 10, interval=0.02, what="abort")
    key = "sglang:generation_tokens_total"
    generated = server.metrics()[key] - before[key]
    assert generated < 1000
    time.sleep(0.3)
    assert server.metrics()[key] - before[key] == generated  # nothing runs any more
    after = server.metrics()
    assert after["sglang:kv_held_usage"] == after["sglang:radix_cache_usage_perc"]  # no KV held
    assert after["sglang:token_usage"] == 0  # what the cache holds is evictable, not used


def test_flush_cache_refused_while_running(server):
    with httpx.stream("POST", server.url + "/generate", timeout=60,
                      json={"input_ids": [1, 2, 4], "stream": True, "sampling_params": LONG}) as r:
        first_event(lines := r.iter_lines())
        busy = httpx.post(server.url + "/flush_cache")
        assert busy.status_code == 400 and "running" in busy.json()["error"]["message"]
    wait_for(lambda: httpx.post(server.url + "/flush_cache").status_code == 200, 10, interval=0.02, what="flush")


def test_queue_full_is_503_with_retry_after(launch, tiny_model):
    s = launch(tiny_model, "--max-running-requests", "1", "--max-queued-requests", "1")
    body = {"input_ids": [1, 2, 3], "sampling_params": LONG}
    with httpx.stream("POST", s.url + "/generate", json={**body, "stream": True}, timeout=60) as r:
        first_event(lines := r.iter_lines())  # running
        waiter = threading.Thread(target=lambda: httpx.post(s.url + "/generate", json=body,
                                                            timeout=120))
        waiter.start()
        wait_for(lambda: s.metrics()["sglang:num_requests_waiting"] == 1, 10, interval=0.02, what="a waiting request")
        full = httpx.post(s.url + "/generate", json=body)
        assert full.status_code == 503 and int(full.headers["Retry-After"]) > 0
        assert "waiting" in full.json()["error"]["message"]
        oa = httpx.post(s.url + "/v1/completions", json={"prompt": "a", "max_tokens": 1})
        assert oa.status_code == 503
    assert s.stop() == 0  # SIGTERM with one request still waiting: drained or aborted, exit 0
    waiter.join(30)


def test_sigterm_drains_in_flight_requests(launch, tiny_model):
    s = launch(tiny_model, "--shutdown-timeout", "60")
    events = []
    with httpx.stream("POST", s.url + "/generate", timeout=60, json={
            "input_ids": [1, 2, 3], "stream": True,
            "sampling_params": {"max_new_tokens": 400, "ignore_eos": True}}) as r:
        events.append(first_event(lines := r.iter_lines()))
        s.proc.send_signal(15)
        wait_for(lambda: httpx.get(s.url + "/health").status_code == 503, 10, interval=0.02, what="draining health")
        assert httpx.get(s.url + "/health").json()["status"] == "draining"
        refused = httpx.post(s.url + "/generate", json={"text": "a"})
        assert refused.status_code == 503 and "shutting down" in refused.json()["error"]["message"]
        events += [line for line in lines if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    import json
    last = json.loads(events[-2][len("data: "):])
    assert last["meta_info"]["finish_reason"] == {"type": "length", "length": 400}
    assert s.proc.wait(30) == 0


def test_drain_serves_kept_alive_clients_and_closes_their_connections(launch, tiny_model):
    """During a rolling update the pod is already out of its Service when SIGTERM comes; a client
    that kept its connection from before still sends here. It gets an answer (not a 503, not a
    reset) that closes the connection, so its next request reconnects elsewhere."""
    s = launch(tiny_model, "--shutdown-timeout", "60")
    body = {"input_ids": [1, 2, 3], "sampling_params": {"max_new_tokens": 4, "temperature": 0}}
    with httpx.Client(timeout=60) as kept, httpx.stream(
            "POST", s.url + "/generate", timeout=60, json={
                "input_ids": [1, 2, 3], "stream": True,
                "sampling_params": {"max_new_tokens": 400, "ignore_eos": True}}) as long:
        first_event(lines := long.iter_lines())  # keeps the drain waiting
        assert kept.post(s.url + "/generate", json=body).headers.get("connection") != "close"
        s.proc.send_signal(15)
        wait_for(lambda: httpx.get(s.url + "/health").status_code == 503, 10, interval=0.02, what="draining health")
        late = kept.post(s.url + "/generate", json=body)
        assert late.status_code == 200 and late.headers.get("connection") == "close"
        assert httpx.post(s.url + "/generate", json=body).status_code == 503  # a new connection
        assert [line for line in lines if line.startswith("data: ")][-1] == "data: [DONE]"
    assert s.proc.wait(30) == 0
