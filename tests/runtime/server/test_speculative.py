"""Speculative decoding through the server: SGLang's flags, the /health flag, the acceptance
metrics, and clear errors for what the radix runtime does not implement."""
from __future__ import annotations

import httpx
import pytest

from radix_runtime.launch_server import engine_config, parse_args


def test_speculative_flags_reach_the_engine_config():
    cfg = engine_config(parse_args([
        "--model-path", "/m", "--speculative-algorithm", "STANDALONE", "--speculative-draft-model", "/d",
        "--speculative-num-steps", "4", "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "5",
        "--speculative-ngram-max-bfs-breadth", "10"]))  # SGLang's ngram cache flags: accepted
    assert (cfg.speculative_algorithm, cfg.speculative_draft_model_path) == ("STANDALONE", "/d")
    assert (cfg.speculative_num_steps, cfg.speculative_num_draft_tokens) == (4, 5)


@pytest.mark.parametrize("argv,needle", [
    (["--speculative-algorithm", "EAGLE3"], "--speculative-algorithm: EAGLE3 needs upstream SGLang"),
    (["--speculative-algorithm", "eagle"], "invalid choice: 'eagle' (choose from 'STANDALONE', 'NGRAM'"),
    (["--speculative-algorithm", "STANDALONE"], "--speculative-draft-model-path: STANDALONE needs"),
    (["--speculative-algorithm", "NGRAM", "--speculative-eagle-topk", "8"], "--speculative-eagle-topk: 8"),
])
def test_unsupported_speculation_fails_clearly(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--model-path", "/m", *argv])
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_upstream_engine_gets_eagle_through():
    args = parse_args(["--model-path", "/m", "--engine", "sglang", "--speculative-algorithm", "EAGLE",
                       "--speculative-draft-model-path", "/d", "--speculative-eagle-topk", "4"])
    assert args.speculative_algorithm == "EAGLE"


def test_server_with_the_target_as_its_draft(launch, tiny_model):
    s = launch(tiny_model, "--speculative-algorithm", "STANDALONE",
               "--speculative-draft-model-path", str(tiny_model), "--speculative-num-steps", "3")
    health = httpx.get(s.url + "/health").json()
    assert health["speculative_decoding_enabled"] is True
    body = {"input_ids": [[5, 6, 7], [9, 10, 11, 12]],
            "sampling_params": {"max_new_tokens": 17, "temperature": 0, "ignore_eos": True}}
    outs = httpx.post(s.url + "/generate", json=body, timeout=60).json()
    assert [o["meta_info"]["completion_tokens"] for o in outs] == [17, 17]
    m = s.metrics()
    assert m["sglang:spec_decode_num_draft_tokens_total"] > 0
    assert m["sglang:spec_decode_num_accepted_tokens_total"] == m["sglang:spec_decode_num_draft_tokens_total"]
    assert m["sglang:spec_accept_rate"] == 1.0
    assert m["sglang:spec_accept_length"] == 4.0  # 3 drafts + the target's own token per round
    # 2 x 16 tokens after the prefill in rounds of 4: far fewer forwards than tokens
    assert m["sglang:forward_passes_total"] <= 1 + 2 * 4
    info = httpx.get(s.url + "/server_info").json()
    assert info["speculative_algorithm"] == "STANDALONE"



def test_health_body_says_whether_speculation_is_on():
    from radix_runtime.core.protocol import EngineStats
    from radix_runtime.server.health import health_body

    stats = EngineStats(0, 0, 0.0, 0.0, 10, 0, 0, 0, 0, 0, last_step_time=0.0)
    for on in (False, True):
        _, body = health_body("ready", stats, radix_cache=True, watchdog_timeout=1, now=0.0, speculative=on)
        assert body["speculative_decoding_enabled"] is on
