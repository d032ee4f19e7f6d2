"""`python -m bench.structured`: output tokens/s with a JSON schema vs unconstrained, same server,
same prompts, same run (`python -m bench` runs it after the shared-prefix table).

The constrained pass (json_schema, tests/support/structured.py's nested "order" schema,
temperature 1.0, one seed per request) runs first; the unconstrained pass then asks each request
for exactly as many tokens as its constrained twin produced (ignore_eos), so both passes generate
the same number of tokens and the ratio is the cost of the grammar (mask fill + apply, matcher
updates). Both passes run `--repeats` times, interleaved; the best wall time of each counts. Target: ratio >= 0.8.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench import bench_model
from tests.support.server import RuntimeServer
from tests.support.structured import SCHEMAS, validate


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.structured", description=__doc__.splitlines()[0])
    p.add_argument("--model-path", help="checkpoint to serve (default: a tiny one written now)")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=400)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    p.add_argument("--out", default=os.path.join(
        os.environ.get("SGLANG_FLEET_CACHE", os.path.expanduser("~/.cache/sglang-fleet")),
        "bench", "structured.json"))
    return p.parse_args(argv)


async def post_generate(url: str, bodies: list[dict], concurrency: int) -> tuple[list[dict], float]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600) as client:
        async def one(body):
            async with sem:
                r = await client.post(url + "/generate", json=body)
                r.raise_for_status()
                return r.json()

        t0 = time.perf_counter()
        outs = await asyncio.gather(*(one(b) for b in bodies))
        return outs, time.perf_counter() - t0


def measure(url: str, args) -> dict:
    schema = SCHEMAS["order"]
    prompts = [f"Order number {i} as JSON:" for i in range(args.requests)]
    constrained = [{"text": p, "sampling_params": {"max_new_tokens": args.max_new_tokens,
                                                  "temperature": 1.0, "sampling_seed": i,
                                                  "json_schema": json.dumps(schema)}}
                   for i, p in enumerate(prompts)]
    asyncio.run(post_generate(url, constrained[:4], 4))  # compile the grammar, warm the model path
    outs, _ = asyncio.run(post_generate(url, constrained, args.concurrency))
    valid = 0
    for o in outs:
        try:
            validate(o["text"], schema)
            valid += 1
        except ValueError:
            pass
    counts = [o["meta_info"]["completion_tokens"] for o in outs]
    free = [{"text": p, "sampling_params": {"max_new_tokens": n, "temperature": 1.0,
                                           "sampling_seed": i, "ignore_eos": True}}
            for i, (p, n) in enumerate(zip(prompts, counts))]
    best_json = best_free = float("inf")
    for _ in range(args.repeats):  # interleaved, so load from elsewhere hits both passes alike
        best_json = min(best_json, asyncio.run(post_generate(url, constrained, args.concurrency))[1])
        free_outs, wall = asyncio.run(post_generate(url, free, args.concurrency))
        best_free = min(best_free, wall)
    tokens = sum(counts)
    assert sum(o["meta_info"]["completion_tokens"] for o in free_outs) == tokens
    return {"requests": len(prompts), "output_tokens": tokens, "valid_json": valid,
            "json_schema_tokens_per_s": tokens / best_json,
            "unconstrained_tokens_per_s": tokens / best_free,
            "ratio": best_free / best_json}


def row(r: dict) -> str:
    return (f"structured output: {r['json_schema_tokens_per_s']:.1f} output tok/s with a JSON schema "
            f"vs {r['unconstrained_tokens_per_s']:.1f} unconstrained = {r['ratio']:.2f}x (target >= "
            f"0.80); {r['valid_json']}/{r['requests']} outputs valid, {r['output_tokens']} tokens each pass")


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="radix-bench-structured-") as tmp:
        model = bench_model(args, tmp)
        server = RuntimeServer(model, [], Path(tmp, "server.log"), threads=args.threads).wait_ready()
        try:
            result = measure(server.url, args)
        finally:
            server.stop()
    print(row(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"workload": vars(args), **result}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
