"""`python -m bench`: the shared-prefix benchmark, radix cache on vs off, side by side, then the
structured-output row (bench/structured.py: output tokens/s with a JSON schema vs unconstrained)
the speculative-decoding rows (bench/speculative.py: tokens per target forward and tokens/s) and
the per-step overhead table (bench/cpu_step.py: our engine, eager and compiled, vs HF `generate`
at batch 32).

Starts two real servers on the same tiny checkpoint (one with --disable-radix-cache), sends each
the same workload (G groups x R requests sharing a P-token prefix per group) with streaming
clients, and reports throughput, time to first token and hit rates. Not a test: numbers vary with
the machine. Results go to a table on stdout and to a JSON file.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench import bench_model
from tests.support.server import RuntimeServer
from tests.support.shared_prefix import SharedPrefix, ideal_cached


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--model-path", help="checkpoint to serve (default: a tiny one written now)")
    p.add_argument("--hidden-size", type=int, default=256, help="tiny checkpoint width")
    p.add_argument("--num-layers", type=int, default=4, help="tiny checkpoint depth")
    p.add_argument("--groups", type=int, default=16)
    p.add_argument("--per-group", type=int, default=8)
    p.add_argument("--prefix-len", type=int, default=512)
    p.add_argument("--suffix-len", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--threads", type=int, default=2, help="torch threads per server")
    p.add_argument("--out", default=os.path.join(
        os.environ.get("SGLANG_FLEET_CACHE", os.path.expanduser("~/.cache/sglang-fleet")),
        "bench", "shared_prefix.json"))
    return p.parse_args(argv)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def one(client: httpx.AsyncClient, url: str, ids: list[int], max_new: int) -> dict:
    body = {"input_ids": ids, "stream": True,
            "sampling_params": {"max_new_tokens": max_new, "temperature": 0, "ignore_eos": True}}
    t0 = time.perf_counter()
    ttft, last = None, None
    async with client.stream("POST", url + "/generate", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if ttft is None:
                ttft = time.perf_counter() - t0
            last = json.loads(line[6:])
    return {"ttft": ttft, "e2e": time.perf_counter() - t0, "meta": last["meta_info"],
            "output_ids": last["output_ids"]}


async def drive(url: str, prompts: list[list[int]], max_new: int, concurrency: int) -> tuple:
    """Send the prompts in order, `concurrency` at a time; results in prompt order."""
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600) as client:
        async def limited(ids):
            async with sem:
                return await one(client, url, ids, max_new)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(limited(p) for p in prompts))
        return results, time.perf_counter() - t0


def measure(server: RuntimeServer, prompts: list[list[int]], args) -> dict:
    httpx.post(server.url + "/generate", json={"input_ids": [7, 8, 9], "sampling_params": {
        "max_new_tokens": 4}}, timeout=120)  # warm up the model path
    httpx.post(server.url + "/flush_cache", timeout=30)
    before = server.metrics()
    results, wall = asyncio.run(drive(server.url, prompts, args.max_new_tokens, args.concurrency))
    after = server.metrics()
    d = {k: after[k] - before[k] for k in ("sglang:prompt_tokens_total",
                                           "sglang:cached_tokens_total",
                                           "sglang:computed_prefill_tokens_total",
                                           "sglang:generation_tokens_total")}
    ttfts = [r["ttft"] for r in results]
    out_tokens = sum(r["meta"]["completion_tokens"] for r in results)
    return {
        "requests": len(results), "wall_s": wall,
        "requests_per_s": len(results) / wall,
        "output_tokens_per_s": out_tokens / wall,
        "prompt_tokens_per_s": d["sglang:prompt_tokens_total"] / wall,
        "ttft_mean_s": statistics.mean(ttfts), "ttft_p50_s": percentile(ttfts, 0.5),
        "ttft_p90_s": percentile(ttfts, 0.9), "ttft_p99_s": percentile(ttfts, 0.99),
        "e2e_mean_s": statistics.mean(r["e2e"] for r in results),
        "hit_rate_gauge": after["sglang:radix_cache_hit_rate"],
        "hit_rate_counters": (d["sglang:cached_tokens_total"] / d["sglang:prompt_tokens_total"]
                              if d["sglang:prompt_tokens_total"] else 0.0),
        "prompt_tokens": d["sglang:prompt_tokens_total"],
        "cached_tokens": d["sglang:cached_tokens_total"],
        "computed_prefill_tokens": d["sglang:computed_prefill_tokens_total"],
        "output_ids": [r["output_ids"] for r in results],
    }


ROWS = [("requests/s", "requests_per_s", "{:.2f}"),
        ("output tok/s", "output_tokens_per_s", "{:.1f}"),
        ("prompt tok/s", "prompt_tokens_per_s", "{:.0f}"), ("TTFT mean ms", "ttft_mean_s", "ms"),
        ("TTFT p50 ms", "ttft_p50_s", "ms"), ("TTFT p90 ms", "ttft_p90_s", "ms"),
        ("TTFT p99 ms", "ttft_p99_s", "ms"), ("e2e mean ms", "e2e_mean_s", "ms"),
        ("hit rate (gauge)", "hit_rate_gauge", "{:.3f}"),
        ("hit rate (counters)", "hit_rate_counters", "{:.3f}"),
        ("prefill computed", "computed_prefill_tokens", "{:.0f}"), ("wall s", "wall_s", "{:.1f}")]


def table(on: dict, off: dict) -> str:
    def fmt(spec, v):
        return f"{v * 1000:.1f}" if spec == "ms" else spec.format(v)

    lines = [f"{'':22}{'radix on':>12}{'radix off':>12}{'on/off':>9}"]
    for label, key, spec in ROWS:
        ratio = on[key] / off[key] if off[key] else float("nan")
        lines.append(f"{label:22}{fmt(spec, on[key]):>12}{fmt(spec, off[key]):>12}{ratio:>9.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="radix-bench-") as tmp:
        model = bench_model(args, tmp)
        vocab = json.loads(Path(model, "config.json").read_text())["vocab_size"]
        work = SharedPrefix(args.groups, args.per_group, args.prefix_len, args.suffix_len,
                            vocab_size=vocab)
        prompts = [p for g in work.prompts() for p in g]  # group by group, as users arrive
        seen: list[list[int]] = []
        ideal = 0
        for p in prompts:
            ideal += ideal_cached(p, seen)
            seen.append(p)
        ideal /= sum(len(p) for p in prompts)
        print(f"workload: {args.groups} groups x {args.per_group} requests, prefix "
              f"{args.prefix_len} + suffix {args.suffix_len} tokens, {args.max_new_tokens} new "
              f"tokens each, {args.concurrency} in flight; ideal hit rate {ideal:.3f}", flush=True)
        results = {}
        for name, flags in (("radix on", []), ("radix off", ["--disable-radix-cache"])):
            server = RuntimeServer(model, flags, Path(tmp, f"{name.replace(' ', '_')}.log"),
                                   threads=args.threads).wait_ready()
            try:
                print(f"running: {name} ...", flush=True)
                results[name] = measure(server, prompts, args)
            finally:
                server.stop()
    on, off = results["radix on"], results["radix off"]
    same = on.pop("output_ids") == off.pop("output_ids")
    print()
    print(table(on, off))
    print(f"\nideal hit rate {ideal:.3f}; greedy outputs identical with and without the cache: "
          f"{same}")
    report = {"workload": vars(args) | {"ideal_hit_rate": ideal}, "radix_on": on, "radix_off": off,
              "outputs_identical": same}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    print()
    from bench import speculative, structured

    # the structured-output row (JSON schema vs unconstrained), then speculative decoding's
    rc = structured.main(["--threads", str(args.threads), "--hidden-size", str(args.hidden_size),
                          "--num-layers", str(args.num_layers)]
                         + (["--model-path", args.model_path] if args.model_path else []))
    print()
    rc = speculative.main([]) or rc
    print()
    from bench import cpu_step

    return cpu_step.main(["--threads", "1", "--torch-compile"]) or rc


if __name__ == "__main__":
    raise SystemExit(main())
