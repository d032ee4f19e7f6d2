"""`python -m bench.speculative`: output tokens per target forward pass and output tokens/s, with
and without speculative decoding, on CPU (`python -m bench` runs it after the structured row).

One server per setting on the same random-weight target: no speculation; STANDALONE with the
target's first --draft-layers layers as the draft (a layer-skip draft: same embedding and head, a
fraction of the compute); STANDALONE with the target as its own draft (every draft accepted: the
ceiling of tokens per forward, at more than twice the compute); NGRAM (prompt lookup, no draft
model). Greedy, the same prompts, one request at a time (the latency-bound case speculation is
for) and then --concurrency in flight. Greedy outputs must be identical across settings; the
table says whether they were.

A random target disagrees with any cheaper model, so the written checkpoint's layers above the
draft's have their output projections scaled by --upper-layer-scale: they still run (and cost
what they cost) but move the residual stream little, so the first layers predict the target well,
as a trained draft predicts its target. Acceptance rates here say nothing about real models; the
speed-up at a given acceptance, and the overheads, are what is measured.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

from bench import bench_model, results_path
from bench.structured import post_generate
from tests.support.server import RuntimeServer


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.speculative", description=__doc__.splitlines()[0])
    p.add_argument("--model-path", help="checkpoint to serve (default: a tiny one written now)")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--draft-layers", type=int, default=1, help="layers of the layer-skip draft")
    p.add_argument("--upper-layer-scale", type=float, default=0.05,
                   help="scale of o_proj/down_proj above the draft's layers in the written target")
    p.add_argument("--num-steps", type=int, default=4, help="--speculative-num-steps")
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--concurrency", type=int, default=4, help="in flight in the second pass")
    p.add_argument("--repeats", type=int, default=3, help="interleaved passes; the best counts")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--out", default=results_path("speculative.json"))
    return p.parse_args(argv)


def layer_skip_draft(model: str, layers: int, out: str) -> str:
    """The target's embedding, first `layers` decoder layers, final norm and head as a model."""
    from safetensors.torch import load_file, save_file

    os.makedirs(out, exist_ok=True)
    for f in os.listdir(model):
        if not f.endswith(".safetensors") and f != "model.safetensors.index.json":
            shutil.copy(os.path.join(model, f), out)
    cfg = json.loads(Path(out, "config.json").read_text())
    cfg["num_hidden_layers"] = layers
    Path(out, "config.json").write_text(json.dumps(cfg))
    weights = {}
    for f in Path(model).glob("*.safetensors"):
        for name, t in load_file(f).items():
            if not name.startswith("model.layers.") or int(name.split(".")[2]) < layers:
                weights[name] = t
    save_file(weights, os.path.join(out, "model.safetensors"))
    return out


def damp_upper_layers(model: str, first: int, scale: float) -> None:
    from safetensors.torch import load_file, save_file

    for f in Path(model).glob("*.safetensors"):
        w = load_file(f)
        for name in w:
            if (name.startswith("model.layers.") and int(name.split(".")[2]) >= first
                    and name.endswith(("o_proj.weight", "down_proj.weight"))):
                w[name] = w[name] * scale
        save_file(w, f)


def prompts(n: int, vocab: int) -> list[list[int]]:
    return [[(i * 131 + j * 17) % (vocab - 10) + 5 for j in range(16 + 4 * i)] for i in range(n)]


def measure(server: RuntimeServer, work: list[list[int]], args, concurrency: int) -> dict:
    bodies = [{"input_ids": p, "sampling_params": {"max_new_tokens": args.max_new_tokens,
                                                   "temperature": 0, "ignore_eos": True}}
              for p in work]
    asyncio.run(post_generate(server.url, bodies[:1], 1))  # warm up
    before = server.metrics()
    outs, wall = asyncio.run(post_generate(server.url, bodies, concurrency))
    after = server.metrics()

    def d(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    tokens = d("sglang:generation_tokens_total")
    proposed = d("sglang:spec_decode_num_draft_tokens_total")
    return {"output_tokens_per_s": tokens / wall,
            "tokens_per_forward": tokens / d("sglang:forward_passes_total"),
            "accept_rate": d("sglang:spec_decode_num_accepted_tokens_total") / proposed if proposed else None,
            "wall_s": wall, "output_ids": [o["output_ids"] for o in outs]}


def main(argv=None) -> int:
    args = parse_args(argv)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="radix-bench-spec-") as tmp:
        model = bench_model(args, tmp)
        if args.model_path is None:
            damp_upper_layers(model, args.draft_layers, args.upper_layer_scale)
        vocab = json.loads(Path(model, "config.json").read_text())["vocab_size"]
        draft = layer_skip_draft(model, args.draft_layers, f"{tmp}/draft")
        steps = ["--speculative-num-steps", str(args.num_steps)]
        settings = {
            "off": [],
            f"STANDALONE {args.draft_layers}-layer draft": ["--speculative-algorithm", "STANDALONE",
                                                            "--speculative-draft-model-path", draft, *steps],
            "STANDALONE self-draft": ["--speculative-algorithm", "STANDALONE",
                                      "--speculative-draft-model-path", model, *steps],
            "NGRAM": ["--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens",
                      str(args.num_steps + 1)],
        }
        work = prompts(args.requests, vocab)
        servers = {name: RuntimeServer(model, flags, Path(tmp, f"server{i}.log"), threads=args.threads)
                   for i, (name, flags) in enumerate(settings.items())}
        try:
            for s in servers.values():
                s.wait_ready(timeout=300)
            # interleaved repeats, best wall time kept: load from elsewhere hits every setting alike
            for rep in range(args.repeats):
                for name, server in servers.items():
                    print(f"pass {rep + 1}/{args.repeats}: speculative {name} ...", flush=True)
                    for c in (1, args.concurrency):
                        x = measure(server, work, args, c)
                        best = results.setdefault(name, {}).get(f"batch {c}")
                        if best is None or x["wall_s"] < best["wall_s"]:
                            results[name][f"batch {c}"] = x
        finally:
            for s in servers.values():
                s.stop()
    base = results["off"]
    identical = all(r[k]["output_ids"] == base[k]["output_ids"] for r in results.values() for k in r)
    lines = [f"speculative decoding (CPU, {args.hidden_size}x{args.num_layers} target, upper layers x"
             f"{args.upper_layer_scale}, greedy, "
             f"{args.requests} requests x {args.max_new_tokens} tokens, --speculative-num-steps {args.num_steps}):",
             f"{'':34}{'tok/fwd':>9}{'tok/s':>9}{'accept':>8}  (batch 1 | batch {args.concurrency})"]
    for name, r in results.items():
        cells = []
        for k in r:
            x = r[k]
            acc = "-" if x["accept_rate"] is None else f"{x['accept_rate']:.2f}"
            cells.append(f"{x['tokens_per_forward']:>9.2f}{x['output_tokens_per_s']:>9.1f}{acc:>8}")
        lines.append(f"{name:34}" + " |".join(cells))
    lines.append(f"greedy outputs identical to no speculation in every setting: {identical}")
    print("\n".join(lines))
    for r in results.values():
        for x in r.values():
            x.pop("output_ids")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"workload": vars(args), "results": results,
                                          "outputs_identical": identical}, indent=2))
    print(f"wrote {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
