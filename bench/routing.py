"""`python -m bench.routing`: SMG's cache_aware vs round_robin in front of 3 runtime servers.

A multi-tenant shared-prefix workload (T tenants, each with its own long system prefix, requests in
a shuffled order) whose prefixes do not all fit in one worker's KV pool (--max-total-tokens) but do
fit in the three pools together. Each policy gets a fresh router and flushed worker caches; the
aggregate hit rate is cached / prompt tokens summed over the workers' /metrics counters. Numbers
vary with the machine; the ratio is what matters. `make bench` runs it after the radix benchmark.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.support.routing_workload import run


def table(results: list[dict]) -> str:
    lines = [f"{'policy':<12} {'ok/requests':>12} {'hit rate':>9}  per-worker prompt tokens",
             "-" * 64]
    for r in results:
        lines.append(f"{r['policy']:<12} {r['ok']:>5}/{r['requests']:<6} {r['hit_rate']:>9.3f}  "
                     f"{[int(x) for x in r['per_worker_prompt_tokens']]}")
    base = next(r["hit_rate"] for r in results if r["policy"] == "round_robin")
    aware = next(r["hit_rate"] for r in results if r["policy"] == "cache_aware")
    lines.append(f"cache_aware / round_robin hit rate: {aware / base if base else float('inf'):.2f}x")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.splitlines()[0])
    p.add_argument("--model-path", help="checkpoint to serve (default: a tiny one written now)")
    p.add_argument("--tenants", type=int, default=6)
    p.add_argument("--per-tenant", type=int, default=8)
    p.add_argument("--pool-tokens", type=int, default=1024, help="--max-total-tokens per worker")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model_path
        if model is None:
            from radix_runtime.tiny_model import write_tiny_model
            model = write_tiny_model(str(Path(tmp) / "tiny"), arch="llama", seed=0)
        print(table(run(model, Path(tmp), tenants=args.tenants, per_tenant=args.per_tenant,
                        pool_tokens=args.pool_tokens)))


if __name__ == "__main__":
    main()
