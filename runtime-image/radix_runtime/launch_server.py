"""`python -m radix_runtime.launch_server --model-path DIR ...`: flags named as SGLang's.

HTTP is served at once; the engine loads in the background (/health answers 503 "loading" until it
is ready). SIGTERM drains: /health turns 503, new requests get 503, in-flight ones finish until
--shutdown-timeout, then the process exits 0.

This is also the image's one entrypoint for a LeaderWorkerSet group: with --tp-size x --pp-size > 1
it starts this pod's rank processes (distributed/launcher.py: placement from the LWS variables or
SGLang's distributed flags); with --engine sglang it execs upstream SGLang with the same flags.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from radix_runtime.distributed.launcher import (DIST_INIT_PORT, ENV_LOCAL_RANK, placement,
                                                sglang_argv)
from radix_runtime.engine.protocol import EngineConfig
from radix_runtime.version import __version__

# Upstream SGLang flags that change nothing for us, accepted so copied command lines keep working.
_NO_OP_FLAGS = ("--trust-remote-code", "--enable-metrics", "--disable-cuda-graph",
                "--skip-server-warmup", "--enable-cache-report")

_ENGINE_FLAGS = ("model_path", "tokenizer_path", "dtype", "device", "context_length", "page_size",
                 "max_total_tokens", "mem_fraction_static", "max_running_requests",
                 "max_queued_requests", "chunked_prefill_size", "max_prefill_tokens",
                 "schedule_policy", "disable_radix_cache", "random_seed", "tp_size", "pp_size")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        if "unrecognized arguments" in message:
            message += (" (radix_runtime implements a subset of SGLang's flags; see --help. "
                        "For the others run upstream SGLang: engine: sglang)")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m radix_runtime.launch_server",
                description="SGLang-compatible server with RadixAttention prefix caching.",
                allow_abbrev=False)  # a typo must not silently match another flag
    m = p.add_argument_group("model")
    m.add_argument("--model-path", "--model", required=True,
                   help="HF-format model directory (config.json, *.safetensors, tokenizer)")
    m.add_argument("--tokenizer-path", help="tokenizer directory (default: --model-path)")
    m.add_argument("--served-model-name", help="name /v1/models reports (default: --model-path)")
    m.add_argument("--chat-template", help="template file (.jinja/.json), built-in name or text")
    m.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16", "half", "float"])
    m.add_argument("--device", choices=["auto", "cpu", "cuda"])
    m.add_argument("--context-length", type=int)

    h = p.add_argument_group("http")
    h.add_argument("--host", default="127.0.0.1")
    h.add_argument("--port", type=int, default=30000)
    h.add_argument("--api-key", help="require `Authorization: Bearer KEY` (health and metrics "
                                     "stay open)")
    h.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error", "critical"])
    h.add_argument("--log-requests", action="store_true", help="log every HTTP request")
    h.add_argument("--watchdog-timeout", type=float, default=300.0,
                   help="/health turns 503 when the scheduler has work but made no step for this "
                        "many seconds")
    h.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="after SIGTERM, how long in-flight requests may take to finish")
    h.add_argument("--health-generate-timeout", type=float, default=20.0,
                   help="deadline of /health_generate's one-token generation")
    h.add_argument("--extend-max-conversations", type=int, default=1024,
                   help="conversations /extend remembers (least recently used dropped first)")
    h.add_argument("--extend-ttl", type=float, default=3600.0,
                   help="seconds an unused conversation is remembered for /extend")
    h.add_argument("--hit-rate-window-tokens", type=int, default=1 << 18,
                   help="prompt tokens of recent prefill work the hit-rate gauge covers")

    s = p.add_argument_group("scheduler and memory")
    s.add_argument("--page-size", type=int)
    s.add_argument("--max-total-tokens", type=int)
    s.add_argument("--mem-fraction-static", type=float)
    s.add_argument("--max-running-requests", type=int)
    s.add_argument("--max-queued-requests", type=int)
    s.add_argument("--chunked-prefill-size", type=int)
    s.add_argument("--max-prefill-tokens", type=int)
    s.add_argument("--schedule-policy", choices=["lpm", "fcfs"])
    s.add_argument("--disable-radix-cache", action="store_true", default=None)
    s.add_argument("--random-seed", type=int)

    d = p.add_argument_group("parallelism")
    d.add_argument("--tp-size", "--tp", "--tensor-parallel-size", dest="tp_size", type=int)
    d.add_argument("--pp-size", "--pp", "--pipeline-parallel-size", dest="pp_size", type=int)
    d.add_argument("--dist-init-addr", help="HOST:PORT of rank 0 for torch.distributed "
                                            "(default: $LWS_LEADER_ADDRESS:--dist-init-port)")
    d.add_argument("--nnodes", type=int, help="pods in the group (default: $LWS_GROUP_SIZE or 1)")
    d.add_argument("--node-rank", type=int, help="this pod's index (default: $LWS_WORKER_INDEX or 0)")
    d.add_argument("--dist-init-port", type=int, default=DIST_INIT_PORT,
                   help="rendezvous port when the address comes from $LWS_LEADER_ADDRESS")
    d.add_argument("--gpus-per-node", type=int,
                   help="rank processes per pod (default: tp x pp / nnodes; env RADIX_GPUS_PER_NODE)")
    d.add_argument("--dist-timeout", type=float, default=600.0,
                   help="seconds to wait for the group to form, and for one collective")
    d.add_argument("--dist-heartbeat-timeout", type=float, default=30.0,
                   help="a rank silent this long breaks the group: every rank exits non-zero")
    p.add_argument("--engine", choices=["radix", "sglang"], default="radix",
                   help="sglang: exec upstream `python3 -m sglang.launch_server` with these flags")

    for flag in _NO_OP_FLAGS:
        p.add_argument(flag, action="store_true", help="accepted for SGLang compatibility; no-op")
    p.add_argument("--version", action="version", version=f"radix_runtime {__version__}")
    return p


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """Only flags the user gave override EngineConfig's defaults."""
    given = {k: getattr(args, k) for k in _ENGINE_FLAGS if getattr(args, k) is not None}
    dtype = given.get("dtype")
    given["dtype"] = {"half": "float16", "float": "float32"}.get(dtype, dtype) if dtype else "auto"
    return EngineConfig(**given)


def parse_args(argv: list[str] | None = None, env=os.environ) -> argparse.Namespace:
    """Our flags; with --engine sglang, upstream-only flags are let through for SGLang."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.engine != "sglang":
        parser.parse_args(argv)  # the usual "unrecognized arguments" error
    try:
        placement(args, env)
    except ValueError as e:
        parser.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.engine == "sglang":
        cmd = sglang_argv(argv, args, os.environ)
        os.execvp(cmd[0], cmd)
    p = placement(args, os.environ)
    local_rank = int(os.environ.get(ENV_LOCAL_RANK, 0))
    tag = "" if p.world_size == 1 else f" [rank {p.rank(local_rank)}]"
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                        format=f"[%(asctime)s] %(levelname)s %(name)s{tag}: %(message)s")
    if p.world_size > 1:
        from radix_runtime.distributed.rank import run

        return run(args, p, local_rank, argv)
    from radix_runtime.server.app import serve  # after arg parsing: --help stays fast

    return asyncio.run(serve(args, engine_config(args)))


if __name__ == "__main__":
    sys.exit(main())
