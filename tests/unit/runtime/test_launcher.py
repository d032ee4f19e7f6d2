"""The launcher's pure parts: where a process sits in its group (LWS variables or SGLang's flags)
and upstream SGLang's command line for `--engine sglang`."""
from __future__ import annotations

import pytest

from radix_runtime.parallel.group import split_layers
from radix_runtime.distributed.launcher import DIST_INIT_PORT, Placement, sglang_argv
from radix_runtime.launch_server import parse_args

LWS = {"LWS_LEADER_ADDRESS": "g-0.g.ns", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"}


def where(argv: list[str], env: dict) -> Placement:
    from radix_runtime.distributed.launcher import placement
    return placement(parse_args(["--model-path", "/m", *argv], env), env)


def test_lws_variables_place_the_pod():
    p = where(["--tp-size", "8", "--pp-size", "2"], LWS)
    assert p == Placement(tp=8, pp=2, nnodes=2, node_rank=1, local_ranks=8, host="g-0.g.ns",
                          port=DIST_INIT_PORT)
    assert (p.world_size, p.rank(0), p.rank(7)) == (16, 8, 15)


def test_flags_win_over_the_environment():
    p = where(["--tp", "4", "--dist-init-addr", "10.0.0.9:5000", "--nnodes", "4", "--node-rank", "3"], LWS)
    assert (p.host, p.port, p.nnodes, p.node_rank, p.local_ranks) == ("10.0.0.9", 5000, 4, 3, 1)
    assert where(["--tp", "2", "--dist-init-addr", "[fd00::1]:7000", "--nnodes", "2",
                  "--node-rank", "0"], {}).host == "fd00::1"


def test_local_rank_count_from_flag_or_env_and_one_pod_needs_no_lws():
    assert where(["--tp", "4", "--gpus-per-node", "2", "--dist-init-port", "1234"], LWS).port == 1234
    assert where(["--tp", "4"], {**LWS, "RADIX_GPUS_PER_NODE": "2"}).local_ranks == 2
    p = where(["--tp", "2", "--pp", "2"], {})
    assert (p.nnodes, p.node_rank, p.local_ranks, p.host) == (1, 0, 4, "127.0.0.1")
    one = where([], {**LWS, "LWS_GROUP_SIZE": "1", "LWS_WORKER_INDEX": "0"})  # LWS size 1
    assert (one.world_size, one.nnodes, one.local_ranks) == (1, 1, 1)


@pytest.mark.parametrize("argv,env,needle", [
    (["--tp", "4", "--gpus-per-node", "1"], LWS, "do not fill 2 node(s) x 1"),
    (["--tp", "3"], LWS, "do not fill"),
    ([], LWS, "tp x pp = 1 ranks do not fill 2 node(s)"),
    (["--tp", "2", "--nnodes", "2"], {}, "--dist-init-addr"),
    (["--tp", "2", "--dist-init-addr", "h:1", "--nnodes", "2", "--node-rank", "2"], {}, "--node-rank 2"),
    (["--tp", "2", "--dist-init-addr", "nohost"], {}, "HOST:PORT"),
])
def test_inconsistent_groups_fail_at_parse_time(argv, env, needle, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--model-path", "/m", *argv], env)
    assert needle in capsys.readouterr().err


def test_sglang_gets_our_flags_verbatim_plus_what_lws_implies():
    argv = ["--engine", "sglang", "--model-path", "/m", "--tp", "16", "--host", "0.0.0.0",
            "--gpus-per-node=8", "--attention-backend", "fa3", "--enable-metrics"]
    args = parse_args(argv, LWS)
    assert sglang_argv(argv, args, LWS) == [
        "python3", "-m", "sglang.launch_server", "--model-path", "/m", "--tp", "16", "--host",
        "0.0.0.0", "--attention-backend", "fa3", "--enable-metrics",
        "--dist-init-addr", f"g-0.g.ns:{DIST_INIT_PORT}", "--nnodes", "2", "--node-rank", "1"]
    given = ["--engine", "sglang", "--model-path", "/m", "--tp", "16", "--dist-init-addr", "a:1",
             "--nnodes", "2", "--node-rank", "0"]
    assert sglang_argv(given, parse_args(given, LWS), LWS)[3:] == given[2:]


def test_unknown_flags_are_errors_for_our_engine_only(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--model-path", "/m", "--enable-dp-attention"], {})
    assert "unrecognized arguments" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a flag we have, with a value only upstream has
        parse_args(["--model-path", "/m", "--attention-backend", "fa3"], {})
    assert "torch_native, triton (the others: --engine sglang)" in capsys.readouterr().err


@pytest.mark.parametrize("layers,pp", [(2, 2), (7, 3), (80, 8), (5, 5)])
def test_stages_cover_the_layers_contiguously(layers, pp):
    ranges = [split_layers(layers, pp, s) for s in range(pp)]
    assert ranges[0][0] == 0 and ranges[-1][1] == layers
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [e - s for s, e in ranges]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
