"""`python -m bench.cpu_step`: per-step overhead on CPU: our engine vs HF transformers `generate`
at the same batch on the same tiny weights, in one process and one run (`python -m bench` runs it).

The tiny checkpoint (radix_runtime.tiny_model's defaults, the tests' shape unless --hidden-size /
--num-layers say otherwise) is written now. `--batch` prompts of `--input-len` random tokens go to
a RadixEngine in this process all at once (greedy, ignore_eos, `--output-len` new tokens each);
HF `generate` gets the same prompts as one batch (greedy, min_new_tokens = max_new_tokens). Both
run `--repeats` times, interleaved; the best of each counts. Reported: output tokens/s end to end
(prefill included) and in the decode phase (HF: generate minus a max_new_tokens=1 generate, i.e.
its prefill), and the engine's decode-step breakdown from the scheduler's always-on step counters
(scheduler.StepTiming: the model's forward + LM head vs everything else in the step: scheduling,
batch preparation, sampling, stop checks, detokenization). Greedy outputs are compared with HF's
per prompt: random weights have near-ties that float rounding flips (HF batched and HF one prompt
at a time disagree on some too), so a few may differ; most differing means a bug (exit 1).

Targets (issue 18 item 3): decode tokens/s at batch 32 >= 3x HF's, non-model share of a decode
step < 20%. Not a test: numbers vary with the machine and its load.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from bench import results_path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_step", description=__doc__.splitlines()[0])
    p.add_argument("--hidden-size", type=int, default=64, help="tiny checkpoint width")
    p.add_argument("--num-layers", type=int, default=2, help="tiny checkpoint depth")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="interleaved passes; the best counts")
    p.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    p.add_argument("--out", default=results_path("cpu_step.json"))
    return p.parse_args(argv)


def write_model(args, tmp: str) -> str:
    from radix_runtime.tiny_model import write_tiny_model

    kw = {}
    if args.hidden_size != 64:  # else: write_tiny_model's own shape (intermediate 128)
        kw["intermediate_size"] = 4 * args.hidden_size
    return write_tiny_model(f"{tmp}/model", hidden_size=args.hidden_size,
                            num_layers=args.num_layers, **kw)


def prompts(args, vocab: int) -> list[list[int]]:
    rng = random.Random(0)
    return [[rng.randrange(5, vocab) for _ in range(args.input_len)] for _ in range(args.batch)]


def run_ours(engine, batch: list[list[int]], out_len: int, tag: str) -> dict:
    from radix_runtime.core.request import EngineRequest, SamplingParams

    sp = SamplingParams(max_new_tokens=out_len, temperature=0.0, ignore_eos=True)
    sched = engine.scheduler
    firsts: list[float] = []

    async def one(i: int, ids: list[int], t0: float):
        last = None
        async for out in engine.generate(EngineRequest(rid=f"{tag}-{i}", input_ids=ids, sampling=sp)):
            if last is None:
                firsts.append(time.perf_counter() - t0)
            last = out
        return last

    async def all_at_once():
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(one(i, p, t0) for i, p in enumerate(batch)))
        return outs, time.perf_counter() - t0

    before = vars(sched.timing).copy()
    outs, wall = asyncio.run(all_at_once())
    after = vars(sched.timing)
    d = {k: after[k] - before[k] for k in after}
    n_tokens = sum(len(o.output_ids) for o in outs)
    decode_wall = wall - max(firsts)  # from the last first token on, the batch only decodes
    steps = max(d["decode_steps"], 1)
    return {"wall_s": wall, "tokens": n_tokens, "tokens_per_s": n_tokens / wall,
            "ttft_max_s": max(firsts),
            "decode_tokens_per_s": len(batch) * (out_len - 1) / decode_wall,
            "decode_steps": d["decode_steps"],
            "step_ms": 1000 * d["decode_step_s"] / steps,
            "model_ms": 1000 * d["decode_model_s"] / steps,
            "rest_ms": 1000 * (d["decode_step_s"] - d["decode_model_s"]) / steps,
            "non_model_share": 1 - d["decode_model_s"] / d["decode_step_s"] if d["decode_step_s"] else 0.0,
            # the loop around the steps: admission, delivery to the callers, their wake-ups
            "loop_ms_per_decode_step": 1000 * decode_wall / steps,
            "output_ids": [o.output_ids for o in outs]}


def run_hf(model, batch: list[list[int]], out_len: int) -> dict:
    import torch

    ids = torch.tensor(batch)
    mask = torch.ones_like(ids)

    def gen(n: int):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=0)
        return out, time.perf_counter() - t0

    out, wall = gen(out_len)
    _, prefill = gen(1)
    return {"wall_s": wall, "tokens": len(batch) * out_len, "tokens_per_s": len(batch) * out_len / wall,
            "ttft_max_s": prefill,
            "decode_tokens_per_s": len(batch) * (out_len - 1) / max(wall - prefill, 1e-9),
            "output_ids": out[:, ids.shape[1]:].tolist()}


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall_s"])


def table(ours: dict, hf: dict) -> str:
    lines = [f"{'':28}{'ours':>10}{'HF':>10}{'ours/HF':>9}"]
    for label, key in (("output tok/s (end to end)", "tokens_per_s"),
                       ("output tok/s (decode)", "decode_tokens_per_s")):
        lines.append(f"{label:28}{ours[key]:>10.0f}{hf[key]:>10.0f}{ours[key] / hf[key]:>9.2f}")
    for label, key in (("wall s", "wall_s"), ("prefill / last TTFT s", "ttft_max_s")):
        lines.append(f"{label:28}{ours[key]:>10.3f}{hf[key]:>10.3f}{ours[key] / hf[key]:>9.2f}")
    lines.append("")
    lines.append("our decode step (scheduler.StepTiming, mean over decode steps)")
    lines.append(f"  {'step ms':26}{ours['step_ms']:>10.3f}")
    lines.append(f"  {'model forward + head ms':26}{ours['model_ms']:>10.3f}")
    lines.append(f"  {'rest ms (sched/batch/sample/detok)':26}{ours['rest_ms']:>7.3f}")
    lines.append(f"  {'non-model share':26}{ours['non_model_share']:>10.1%}")
    lines.append(f"  {'loop ms per decode step':26}{ours['loop_ms_per_decode_step']:>10.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from radix_runtime.core.config import EngineConfig
    from radix_runtime.engine.radix_engine import RadixEngine

    with tempfile.TemporaryDirectory(prefix="cpu-step-") as tmp:
        path = write_model(args, tmp)
        vocab = json.loads(Path(path, "config.json").read_text())["vocab_size"]
        batch = prompts(args, vocab)
        print(f"workload: batch {args.batch}, {args.input_len} in / {args.output_len} out, tiny "
              f"checkpoint {args.hidden_size} x {args.num_layers} layers, {args.threads} torch "
              f"thread(s), best of {args.repeats}", flush=True)
        hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        engine = RadixEngine(EngineConfig(model_path=path, device="cpu", disable_radix_cache=True,
                                          max_running_requests=max(args.batch, 1)))
        try:
            run_ours(engine, batch[:2], 4, "warm")
            run_hf(hf_model, batch[:2], 4)
            ours_runs, hf_runs = [], []
            for k in range(args.repeats):
                ours_runs.append(run_ours(engine, batch, args.output_len, f"r{k}"))
                hf_runs.append(run_hf(hf_model, batch, args.output_len))
        finally:
            asyncio.run(engine.shutdown())
    ours, hf = best(ours_runs), best(hf_runs)
    same = sum(a == b for a, b in zip(ours.pop("output_ids"), hf.pop("output_ids")))
    for r in ours_runs + hf_runs:
        r.pop("output_ids", None)
    print()
    print(table(ours, hf))
    ratio = ours["decode_tokens_per_s"] / hf["decode_tokens_per_s"]
    print(f"\ngreedy outputs identical to HF: {same}/{args.batch} prompts; decode ours/HF {ratio:.2f} (target >= 3), "
          f"non-model share {ours['non_model_share']:.1%} (target < 20%)")
    report = {"workload": vars(args), "ours": ours, "hf": hf, "ours_runs": ours_runs,
              "hf_runs": hf_runs, "prompts_identical_to_hf": same, "decode_ratio": ratio}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0 if 2 * same > args.batch else 1


if __name__ == "__main__":
    raise SystemExit(main())
