"""`python -m radix_runtime.launch_server --model-path DIR ...`: flags named as SGLang's.

HTTP is served at once; the engine loads in the background (/health answers 503 "loading" until it
is ready). SIGTERM drains: /health turns 503, new requests get 503, in-flight ones finish until
--shutdown-timeout, then the process exits 0.

This is also the image's one entrypoint for a LeaderWorkerSet group: with --tp-size x --pp-size > 1
it starts this pod's rank processes (distributed/launcher.py: placement from the LWS variables or
SGLang's distributed flags); with --engine sglang it execs upstream SGLang with the same flags.
This module only parses the flags into EngineConfig and ServerConfig (core/config.py, which holds
the defaults) and dispatches.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys

from radix_runtime.core.config import (ATTENTION_BACKENDS, DTYPE_ALIASES, DTYPES, EngineConfig,
                                       ServerConfig, check_decode_graphs)
from radix_runtime.core.spec_config import ALGORITHMS as SPEC_ALGORITHMS
from radix_runtime.core.spec_config import DEFAULT_NUM_STEPS as SPEC_DEFAULT_STEPS
from radix_runtime.core.spec_config import UPSTREAM_ONLY as SPEC_UPSTREAM_ONLY
from radix_runtime.core.spec_config import resolve_speculative
from radix_runtime.distributed.launcher import (DIST_INIT_PORT, ENV_LOCAL_RANK, placement,
                                                sglang_argv)
from radix_runtime.server.tool_calls import PARSERS
from radix_runtime.version import __version__

# Upstream SGLang flags that change nothing for us, accepted so copied command lines keep working.
_NO_OP_FLAGS = ("--trust-remote-code", "--enable-metrics", "--skip-server-warmup",
                "--enable-cache-report")

_S = ServerConfig  # the server flags' defaults

# The API key's environment variable: the name SGLang clients use for a server's key. Upstream
# SGLang itself takes the key only as --api-key; an env var keeps it out of argv (/proc/PID/cmdline,
# `ps`), which a Kubernetes Secret (env valueFrom.secretKeyRef) fills.
API_KEY_ENV = "SGLANG_API_KEY"


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
    m.add_argument("--dtype", choices=["auto", *DTYPES, *DTYPE_ALIASES])
    m.add_argument("--device", choices=["auto", "cpu", "cuda"])
    m.add_argument("--context-length", type=int)
    m.add_argument("--attention-backend", metavar="{" + ",".join(ATTENTION_BACKENDS) + "}",
                   help="attention kernels over the paged KV pool: torch_native (the PyTorch "
                        "reference, default) or triton (CUDA, opt-in until verified on a GPU); upstream's "
                        "others (fa3, flashinfer, ...) with --engine sglang")

    c = p.add_argument_group("structured output")
    c.add_argument("--grammar-backend", choices=["xgrammar"],
                   help="grammar engine for json_schema / regex / ebnf and forced tool calls")
    c.add_argument("--tool-call-parser", choices=PARSERS,
                   help="tool-call format in the model's output (default: from the chat template: "
                        "hermes for <tool_call> tags, llama3 for <|python_tag|> templates)")

    h = p.add_argument_group("http")
    h.add_argument("--host", default=_S.host)
    h.add_argument("--port", type=int, default=_S.port)
    h.add_argument("--api-key", help="require `Authorization: Bearer KEY` (health and metrics "
                                     f"stay open; default: ${API_KEY_ENV}, which keeps the key "
                                     "out of the process list)")
    h.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error", "critical"])
    h.add_argument("--log-requests", action="store_true", help="log every HTTP request")
    h.add_argument("--watchdog-timeout", type=float, default=_S.watchdog_timeout,
                   help="/health turns 503 when the scheduler has work but made no step for this "
                        "many seconds")
    h.add_argument("--shutdown-timeout", type=float, default=_S.shutdown_timeout,
                   help="after SIGTERM, how long in-flight requests may take to finish")
    h.add_argument("--health-generate-timeout", type=float, default=_S.health_generate_timeout,
                   help="deadline of /health_generate's one-token generation")
    h.add_argument("--extend-max-conversations", type=int, default=_S.extend_max_conversations,
                   help="conversations /extend remembers (least recently used dropped first)")
    h.add_argument("--extend-ttl", type=float, default=_S.extend_ttl,
                   help="seconds an unused conversation is remembered for /extend")
    h.add_argument("--hit-rate-window-tokens", type=int, default=_S.hit_rate_window_tokens,
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
    s.add_argument("--enable-overlap-schedule", dest="enable_overlap_schedule", action="store_true",
                   default=None, help="greedy decode batches run on a model thread while the "
                   "scheduler commits the last one and plans the next (opt-in)")
    s.add_argument("--disable-overlap-schedule", dest="enable_overlap_schedule", action="store_false",
                   default=None, help="SGLang's flag; overlap is off unless enabled")

    o = p.add_argument_group("decode graphs (executor/decode_graph.py; both opt-in)")
    o.add_argument("--enable-torch-compile", action="store_true", default=None,
                   help="decode batches up to --torch-compile-max-bs run inductor-compiled at padded "
                        "batch sizes (all sizes compile at start)")
    o.add_argument("--torch-compile-max-bs", type=int,
                   help=f"largest decode batch compiled (default {EngineConfig.torch_compile_max_bs})")
    o.add_argument("--cuda-graph-max-bs", type=int,
                   help="CUDA: capture decode CUDA graphs up to this batch size (needs "
                        "--attention-backend triton; default: no graphs)")
    o.add_argument("--disable-cuda-graph", action="store_true", default=None,
                   help="no CUDA graphs even with --cuda-graph-max-bs")

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
    add_speculative_flags(p)
    p.add_argument("--engine", choices=["radix", "sglang"], default="radix",
                   help="sglang: exec upstream `python3 -m sglang.launch_server` with these flags")

    for flag in _NO_OP_FLAGS:
        p.add_argument(flag, action="store_true", help="accepted for SGLang compatibility; no-op")
    p.add_argument("--version", action="version", version=f"radix_runtime {__version__}")
    return p


def add_speculative_flags(p: argparse.ArgumentParser) -> None:
    """SGLang's --speculative-* flags (docs/speculative-decoding.md); core/spec_config.py checks
    their combination."""
    g = p.add_argument_group("speculative decoding")
    g.add_argument("--speculative-algorithm", choices=[*SPEC_ALGORITHMS, *SPEC_UPSTREAM_ONLY],
                   help="STANDALONE: a smaller draft model; NGRAM: prompt lookup, no draft model "
                        "(EAGLE, EAGLE3, NEXTN: upstream SGLang only)")
    g.add_argument("--speculative-draft-model-path", "--speculative-draft-model",
                   help="STANDALONE's draft model directory (same tokenizer as the target)")
    g.add_argument("--speculative-num-steps", type=int,
                   help=f"draft tokens proposed per round (default {SPEC_DEFAULT_STEPS})")
    g.add_argument("--speculative-eagle-topk", type=int, help="draft branching: 1 (a chain) only")
    g.add_argument("--speculative-num-draft-tokens", type=int,
                   help="tokens verified per round, the last accepted one included (num-steps + 1; "
                        "NGRAM: default 12)")
    g.add_argument("--speculative-accept-threshold-single", type=float,
                   help="1.0 only (exact verification)")
    g.add_argument("--speculative-accept-threshold-acc", type=float, help="1.0 only")
    g.add_argument("--speculative-ngram-min-match-window-size", type=int,
                   help="NGRAM: shortest suffix looked up (default 1)")
    g.add_argument("--speculative-ngram-max-match-window-size", type=int,
                   help="NGRAM: longest suffix looked up (default 12)")
    # SGLang's ngram cache shape: accepted so copied command lines work; we draft one chain
    # looked up in the request's own tokens, so they change nothing
    for flag, kind in (("--speculative-ngram-min-bfs-breadth", int), ("--speculative-ngram-max-bfs-breadth", int),
                       ("--speculative-ngram-branch-length", int), ("--speculative-ngram-capacity", int)):
        g.add_argument(flag, type=kind, help="accepted for SGLang compatibility; no effect")
    g.add_argument("--speculative-ngram-match-type", choices=["BFS", "PROB"],
                   help="accepted for SGLang compatibility; no effect")


def _config(cls, args: argparse.Namespace):
    """The dataclass's fields from the flags of the same name; a flag not given keeps its default."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                  if getattr(args, f.name) is not None})


def engine_config(args: argparse.Namespace) -> EngineConfig:
    return _config(EngineConfig, args)


def server_config(args: argparse.Namespace) -> ServerConfig:
    return _config(ServerConfig, args)


def parse_args(argv: list[str] | None = None, env=os.environ) -> argparse.Namespace:
    """Our flags; with --engine sglang, upstream-only flags are let through for SGLang."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.engine != "sglang":
        parser.parse_args(argv)  # the usual "unrecognized arguments" error
    try:
        placement(args, env)
        if args.engine != "sglang":  # upstream checks its own (and has EAGLE etc., fa3 etc.)
            resolve_speculative(engine_config(args))
            check_decode_graphs(engine_config(args))
            if args.attention_backend not in (None, *ATTENTION_BACKENDS):
                raise ValueError(f"--attention-backend {args.attention_backend}: radix_runtime has "
                                 f"{', '.join(ATTENTION_BACKENDS)} (the others: --engine sglang)")
    except ValueError as e:
        parser.error(str(e))
    if args.api_key is None:
        args.api_key = env.get(API_KEY_ENV) or None  # an empty variable means no key
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
    config, server = engine_config(args), server_config(args)
    if p.world_size > 1:
        from radix_runtime.distributed.rank import run  # after arg parsing: --help stays fast

        return run(config, server, p, local_rank, argv, args.dist_timeout, args.dist_heartbeat_timeout)
    from radix_runtime.server.app import serve

    return asyncio.run(serve(server, config))


if __name__ == "__main__":
    sys.exit(main())
