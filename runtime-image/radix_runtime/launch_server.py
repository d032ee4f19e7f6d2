"""`python -m radix_runtime.launch_server --model-path DIR ...`: flags named as SGLang's.

HTTP is served at once; the engine loads in the background (/health answers 503 "loading" until it
is ready). SIGTERM drains: /health turns 503, new requests get 503, in-flight ones finish until
--shutdown-timeout, then the process exits 0.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

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
    d.add_argument("--dist-init-addr", help="HOST:PORT of rank 0 for torch.distributed")
    d.add_argument("--nnodes", type=int, default=1)
    d.add_argument("--node-rank", type=int, default=0)

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        parser.error(f"--node-rank {args.node_rank} must be in [0, --nnodes {args.nnodes})")
    if args.nnodes > 1 and not args.dist_init_addr:
        parser.error("--nnodes > 1 needs --dist-init-addr")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    from radix_runtime.server.app import serve  # after arg parsing: --help stays fast

    return asyncio.run(serve(args, engine_config(args)))


if __name__ == "__main__":
    sys.exit(main())
