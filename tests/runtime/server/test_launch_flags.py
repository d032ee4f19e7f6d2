"""launch_server's flags: SGLang names and aliases, EngineConfig defaults kept, clear errors."""
import pytest

from radix_runtime.core.config import EngineConfig
from radix_runtime.launch_server import build_parser, engine_config, parse_args


def test_sglang_flags_reach_the_engine_config():
    args = parse_args(["--model-path", "/m", "--tp", "2", "--pp-size", "2", "--page-size", "16",
                       "--max-running-requests", "8", "--disable-radix-cache", "--dtype", "half",
                       "--schedule-policy", "fcfs", "--enable-metrics", "--trust-remote-code",
                       "--dist-init-addr", "10.0.0.1:5000", "--nnodes", "2", "--node-rank", "1"])
    cfg = engine_config(args)
    assert (cfg.tp_size, cfg.pp_size, cfg.page_size, cfg.max_running_requests) == (2, 2, 16, 8)
    assert cfg.disable_radix_cache and cfg.dtype == "float16" and cfg.schedule_policy == "fcfs"
    assert (args.nnodes, args.node_rank, args.dist_init_addr) == (2, 1, "10.0.0.1:5000")


def test_defaults_come_from_engine_config():
    cfg = engine_config(parse_args(["--model-path", "/m"]))
    assert cfg == EngineConfig(model_path="/m")
    args = build_parser().parse_args(["--model-path", "/m"])
    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 30000, None)


@pytest.mark.parametrize("argv,needle", [
    (["--model-path", "/m", "--enable-flashinfer"], "unrecognized arguments: --enable-flashinfer"),
    (["--model-path", "/m", "--max-running"], "unrecognized arguments: --max-running"),
    (["--model-path", "/m", "--nnodes", "2"], "--dist-init-addr"),
    (["--model-path", "/m", "--node-rank", "1"], "--node-rank"),
    ([], "--model-path"),
])
def test_bad_command_lines_fail_clearly(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_api_key_comes_from_sglang_api_key_unless_the_flag_is_given():
    assert parse_args(["--model-path", "/m"], env={"SGLANG_API_KEY": "from-env"}).api_key == "from-env"
    assert parse_args(["--model-path", "/m", "--api-key", "flag"],
                      env={"SGLANG_API_KEY": "from-env"}).api_key == "flag"
    assert parse_args(["--model-path", "/m"], env={"SGLANG_API_KEY": ""}).api_key is None
    assert parse_args(["--model-path", "/m"], env={}).api_key is None
