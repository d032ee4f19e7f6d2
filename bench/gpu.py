"""`python -m bench.gpu`: the runtime on a GPU with a Llama-3.1-8B-shaped bf16 random-weight
checkpoint written by the bench itself (no hub), against HF transformers and the card's
memory-bandwidth roofline. One JSON and one table.

(a) The server on CUDA: `--prompts` prompts of `--input-len` random tokens, `--output-len` new
    tokens each (greedy, ignore_eos), all sent at once with streaming clients: output tokens/s,
    TTFT and inter-token latency percentiles (a streamed update carrying k new tokens counts as k
    gaps of 1/k of it); then a shared-prefix workload (tests/support/shared_prefix.py) with the
    radix cache on and off (two servers).
(b) HF transformers `generate` on the same weights, dtype and batch (greedy, min_new_tokens =
    max_new_tokens), run after the servers have released the card.
(c) The roofline: a decode step must read every weight but the embedding once plus each
    sequence's KV; over the copy bandwidth measured on the card (a large device-to-device copy,
    read + write bytes per second) that bounds the decode step time and the decode tokens/s.

`--tiny` runs the whole pipeline on CPU in well under a minute (a tiny checkpoint, a few prompts):
the proof that it works end to end where no GPU is. GPU-only code is imported lazily.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import results_path

# Llama 3.1 8B's config.json (the shape; the weights are random)
LLAMA_3_1_8B = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": False,
}
# the same structure, small enough for a CPU (--tiny)
TINY = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 768, "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "rope_scaling": None, "tie_word_embeddings": False,
}
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny checkpoint on CPU, small workload")
    p.add_argument("--model-path", help="serve this checkpoint instead of writing one")
    p.add_argument("--device", help="default: cuda (cpu with --tiny)")
    p.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPE_BYTES))
    p.add_argument("--prompts", type=int, help="default 256 (8 with --tiny)")
    p.add_argument("--input-len", type=int, help="default 512 (64 with --tiny)")
    p.add_argument("--output-len", type=int, help="default 128 (16 with --tiny)")
    p.add_argument("--groups", type=int, help="shared-prefix groups (default 16, 2 with --tiny)")
    p.add_argument("--per-group", type=int, help="requests per group (default 16, 4 with --tiny)")
    p.add_argument("--prefix-len", type=int, help="shared prefix tokens (default 1024, 48 --tiny)")
    p.add_argument("--suffix-len", type=int, default=32)
    p.add_argument("--no-hf", action="store_true", help="skip HF generate")
    p.add_argument("--copy-mib", type=int, help="bandwidth probe size (default 2048, 64 --tiny)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (CPU runs)")
    p.add_argument("--server-flags", default="", help="extra launch_server flags, one string")
    p.add_argument("--out", default=results_path("gpu.json"))
    p.add_argument("--log-dir", help="keep the servers' logs here (default: a temporary folder)")
    a = p.parse_args(bind_server_flags(sys.argv[1:] if argv is None else argv))
    small = a.tiny
    for name, big, tiny in (("device", "cuda", "cpu"), ("prompts", 256, 8), ("input_len", 512, 64),
                            ("output_len", 128, 16), ("groups", 16, 2), ("per_group", 16, 4),
                            ("prefix_len", 1024, 48), ("copy_mib", 2048, 64)):
        if getattr(a, name) is None:
            setattr(a, name, tiny if small else big)
    return a


def bind_server_flags(argv: list[str]) -> list[str]:
    """argparse reads a lone flag after --server-flags ("--server-flags --enable-torch-compile")
    as an option of its own and refuses it: bind the next word to --server-flags."""
    out, words = [], iter(argv)
    for a in words:
        out.append(f"{a}={next(words, '')}" if a == "--server-flags" else a)
    return out


def shape(args) -> dict:
    return dict(TINY if args.tiny else LLAMA_3_1_8B)


# -- arithmetic (no torch) ---------------------------------------------------------------------
def param_counts(cfg: dict) -> dict:
    """Parameters by part: embedding, decoder layers, final norm, LM head."""
    h, inter, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    d = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    layer = h * q + 2 * h * kv + q * h + 3 * h * inter + 2 * h
    embed = cfg["vocab_size"] * h
    return {"embedding": embed, "layers": n * layer, "norm": h,
            "lm_head": 0 if cfg.get("tie_word_embeddings") else embed}


def weight_bytes_per_step(cfg: dict, dtype_bytes: int) -> int:
    """Weights a decode step reads: all but the embedding table (a few rows are gathered); a
    tied head reads the embedding once as the head."""
    c = param_counts(cfg)
    head = c["lm_head"] or c["embedding"]
    return (c["layers"] + c["norm"] + head) * dtype_bytes


def kv_bytes_per_token(cfg: dict, dtype_bytes: int) -> int:
    d = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * d * dtype_bytes


def roofline(cfg: dict, dtype_bytes: int, batch: int, mean_context: float, bandwidth: float) -> dict:
    """The memory-bound floor of a decode step of `batch` sequences of `mean_context` tokens at
    `bandwidth` bytes/s: bytes read, seconds, and the decode tokens/s it allows."""
    w = weight_bytes_per_step(cfg, dtype_bytes)
    kv = batch * mean_context * kv_bytes_per_token(cfg, dtype_bytes)
    step = (w + kv) / bandwidth
    return {"weight_bytes": w, "kv_bytes": kv, "step_bytes": w + kv, "bandwidth_Bps": bandwidth,
            "step_s": step, "decode_tokens_per_s": batch / step}


def percentiles(xs: list[float], qs=(0.5, 0.9, 0.99)) -> dict:
    if not xs:
        return {f"p{round(q * 100)}": float("nan") for q in qs}
    s = sorted(xs)
    return {f"p{round(q * 100)}": s[min(len(s) - 1, int(q * len(s)))] for q in qs}


def gaps(events: list[tuple[float, int]]) -> list[float]:
    """(time, tokens so far) per streamed update -> per-token gaps after the first token."""
    out = []
    for (t0, n0), (t1, n1) in zip(events, events[1:]):
        if n1 > n0:
            out += [(t1 - t0) / (n1 - n0)] * (n1 - n0)
    return out


# -- the checkpoint ------------------------------------------------------------------------------
def write_checkpoint(cfg: dict, out: str, dtype: str, device: str, seed: int = 0) -> str:
    """An HF Llama directory of `cfg`'s shape: our tiny BPE tokenizer and config files
    (radix_runtime.tiny_model), random weights (std 0.02, norms 1) made on `device`, written as
    one safetensors shard per few layers with an index (HF's sharded layout)."""
    import torch
    from safetensors.torch import save_file

    from radix_runtime.tiny_model import write_tiny_model

    write_tiny_model(out, hidden_size=64, num_layers=1, intermediate_size=64)
    os.remove(os.path.join(out, "model.safetensors"))
    conf = json.loads(Path(out, "config.json").read_text())
    conf.update(cfg, architectures=["LlamaForCausalLM"], model_type="llama", torch_dtype=dtype)
    Path(out, "config.json").write_text(json.dumps(conf, indent=2))
    dt = getattr(torch, dtype)
    g = torch.Generator(device=device).manual_seed(seed)
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    d = cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d

    def rnd(*s):
        return (torch.randn(*s, generator=g, device=device, dtype=torch.float32) * 0.02).to(dt).cpu()

    def ones(n):
        return torch.ones(n, dtype=dt)

    shards: list[dict] = [{"model.embed_tokens.weight": rnd(cfg["vocab_size"], h),
                           "model.norm.weight": ones(h), "lm_head.weight": rnd(cfg["vocab_size"], h)}]
    per_shard = 4
    for i in range(cfg["num_hidden_layers"]):
        if i % per_shard == 0:
            shards.append({})
        p = f"model.layers.{i}."
        shards[-1].update({
            p + "input_layernorm.weight": ones(h), p + "post_attention_layernorm.weight": ones(h),
            p + "self_attn.q_proj.weight": rnd(q, h), p + "self_attn.k_proj.weight": rnd(kv, h),
            p + "self_attn.v_proj.weight": rnd(kv, h), p + "self_attn.o_proj.weight": rnd(h, q),
            p + "mlp.gate_proj.weight": rnd(inter, h), p + "mlp.up_proj.weight": rnd(inter, h),
            p + "mlp.down_proj.weight": rnd(h, inter)})
    weight_map, total = {}, 0
    for k, tensors in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, os.path.join(out, name), metadata={"format": "pt"})
        for t_name, t in tensors.items():
            weight_map[t_name] = name
            total += t.numel() * t.element_size()
    Path(out, "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return out


# -- measurements --------------------------------------------------------------------------------
def copy_bandwidth(device: str, mib: int, repeats: int = 10) -> float:
    """Bytes/s of a large same-device copy (read + write counted)."""
    import torch

    n = mib * (1 << 20)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        secs = start.elapsed_time(end) / 1000
    else:
        t0 = time.perf_counter()
        for _ in range(repeats):
            dst.copy_(src)
        secs = time.perf_counter() - t0
    return 2 * n * repeats / secs


async def _stream(client, url: str, ids: list[int], max_new: int, t0: float) -> dict:
    body = {"input_ids": ids, "stream": True,
            "sampling_params": {"max_new_tokens": max_new, "temperature": 0, "ignore_eos": True}}
    events: list[tuple[float, int]] = []
    async with client.stream("POST", url + "/generate", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                meta = json.loads(line[6:])["meta_info"]
                events.append((time.perf_counter() - t0, meta["completion_tokens"]))
    return {"ttft": events[0][0], "end": events[-1][0], "tokens": events[-1][1], "gaps": gaps(events)}


def all_at_once(url: str, prompts: list[list[int]], max_new: int) -> dict:
    import httpx

    async def go():
        limits = httpx.Limits(max_connections=len(prompts) + 8, max_keepalive_connections=len(prompts) + 8)
        async with httpx.AsyncClient(timeout=3600, limits=limits) as client:
            t0 = time.perf_counter()
            res = await asyncio.gather(*(_stream(client, url, p, max_new, t0) for p in prompts))
            return res, time.perf_counter() - t0

    res, wall = asyncio.run(go())
    tokens = sum(r["tokens"] for r in res)
    itl = [g for r in res for g in r["gaps"]]
    first_all = max(r["ttft"] for r in res)
    return {"requests": len(res), "wall_s": wall, "output_tokens": tokens,
            "output_tokens_per_s": tokens / wall,
            # after the last first token only decoding is left
            "decode_tokens_per_s": sum(r["tokens"] - 1 for r in res) / max(wall - first_all, 1e-9),
            "ttft_s": percentiles([r["ttft"] for r in res]) | {"mean": statistics.mean(r["ttft"] for r in res)},
            "itl_s": percentiles(itl) | {"mean": statistics.mean(itl) if itl else float("nan")}}


def serve(model: str, flags: list[str], log: Path, args):
    from tests.support.server import RuntimeServer

    s = RuntimeServer(model, ["--device", args.device, *flags, *args.server_flags.split()], log,
                      threads=args.threads).wait_ready(timeout=1800)
    import httpx

    httpx.post(s.url + "/generate", json={"input_ids": [5, 6, 7], "sampling_params": {
        "max_new_tokens": 4}}, timeout=600)  # warm-up (kernels, allocator)
    httpx.post(s.url + "/flush_cache", timeout=60)
    return s


def run_hf(model: str, prompts: list[list[int]], max_new: int, args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    ids = torch.tensor(prompts, device=args.device)
    mask = torch.ones_like(ids)

    def gen(n):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            m.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       pad_token_id=0)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    gen(2)  # warm-up
    wall, prefill = gen(max_new), gen(1)
    del m
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    n = len(prompts)
    return {"wall_s": wall, "prefill_s": prefill, "output_tokens_per_s": n * max_new / wall,
            "decode_tokens_per_s": n * (max_new - 1) / max(wall - prefill, 1e-9)}


def table(r: dict) -> str:
    a, hf, roof = r["batch"], r.get("hf"), r["roofline"]
    ms = lambda x: f"{x * 1000:.3g}"  # noqa: E731
    lines = [f"batch: {r['workload']['prompts']} x {r['workload']['input_len']} in / "
             f"{r['workload']['output_len']} out, all at once ({r['device']}, {r['workload']['dtype']})",
             f"{'':30}{'ours':>12}{'HF':>12}{'roofline':>12}"]
    hf_v = lambda k: f"{hf[k]:.0f}" if hf else "-"  # noqa: E731
    lines.append(f"{'output tok/s (end to end)':30}{a['output_tokens_per_s']:>12.0f}{hf_v('output_tokens_per_s'):>12}{'':>12}")
    lines.append(f"{'output tok/s (decode)':30}{a['decode_tokens_per_s']:>12.0f}{hf_v('decode_tokens_per_s'):>12}"
                 f"{roof['decode_tokens_per_s']:>12.0f}")
    for k in ("p50", "p90", "p99"):
        lines.append(f"{'TTFT ' + k + ' ms':30}{ms(a['ttft_s'][k]):>12}")
    for k in ("p50", "p90", "p99"):
        lines.append(f"{'ITL ' + k + ' ms':30}{ms(a['itl_s'][k]):>12}{'':>12}{ms(roof['step_s']):>12}")
    lines.append(f"decode at {a['decode_tokens_per_s'] / roof['decode_tokens_per_s']:.1%} of the roofline "
                 f"({roof['step_bytes'] / 1e9:.2f} GB per step at {roof['bandwidth_Bps'] / 1e9:.0f} GB/s copy bandwidth)")
    sp = r["shared_prefix"]
    lines.append("")
    lines.append(f"shared prefix: {sp['workload']}")
    lines.append(f"{'':30}{'radix on':>12}{'radix off':>12}{'on/off':>9}")
    on, off = sp["radix_on"], sp["radix_off"]
    for label, f in (("output tok/s", lambda x: x["output_tokens_per_s"]),
                     ("TTFT p50 ms", lambda x: x["ttft_s"]["p50"] * 1000),
                     ("TTFT p99 ms", lambda x: x["ttft_s"]["p99"] * 1000),
                     ("ITL p50 ms", lambda x: x["itl_s"]["p50"] * 1000)):
        lines.append(f"{label:30}{f(on):>12.1f}{f(off):>12.1f}{f(on) / f(off):>9.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import random

    import torch

    from tests.support.shared_prefix import SharedPrefix

    torch.set_num_threads(args.threads)
    cfg = shape(args)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        if args.model_path:
            model = args.model_path
            cfg = {**cfg, **json.loads(Path(model, "config.json").read_text())}
        else:
            t0 = time.perf_counter()
            model = write_checkpoint(cfg, f"{tmp}/model", args.dtype, args.device)
            print(f"wrote the checkpoint in {time.perf_counter() - t0:.0f}s", flush=True)
        rng = random.Random(0)
        vocab = min(cfg["vocab_size"], 745)  # ids the tiny tokenizer also knows (text stays cheap)
        prompts = [[rng.randrange(5, vocab) for _ in range(args.input_len)] for _ in range(args.prompts)]
        bw = copy_bandwidth(args.device, args.copy_mib)
        mean_ctx = args.input_len + args.output_len / 2
        report = {"device": args.device, "workload": vars(args), "shape": cfg, "partial": True,
                  "roofline": roofline(cfg, DTYPE_BYTES[args.dtype], args.prompts, mean_ctx, bw)}
        save(report, args.out)  # and after each phase: a run cut short keeps what it measured
        logs = Path(args.log_dir or tmp)
        logs.mkdir(parents=True, exist_ok=True)
        flags = ["--dtype", args.dtype]
        s = serve(model, flags, logs / "server.log", args)
        try:
            print("running: batch ...", flush=True)
            report["batch"] = all_at_once(s.url, prompts, args.output_len)
            save(report, args.out)
            work = SharedPrefix(args.groups, args.per_group, args.prefix_len, args.suffix_len, vocab_size=vocab)
            shared = [p for g in work.prompts() for p in g]
            print("running: shared prefix, radix on ...", flush=True)
            on = all_at_once(s.url, shared, args.output_len)
        finally:
            s.stop()
        s = serve(model, [*flags, "--disable-radix-cache"], logs / "server-nocache.log", args)
        try:
            print("running: shared prefix, radix off ...", flush=True)
            off = all_at_once(s.url, shared, args.output_len)
        finally:
            s.stop()
        report["shared_prefix"] = {"workload": f"{args.groups} groups x {args.per_group}, prefix "
                                               f"{args.prefix_len} + suffix {args.suffix_len}, "
                                               f"{args.output_len} out, all at once",
                                   "radix_on": on, "radix_off": off}
        save(report, args.out)
        if not args.no_hf:
            print("running: HF generate ...", flush=True)
            report["hf"] = run_hf(model, prompts, args.output_len, args)
    report["partial"] = False
    print()
    print(table(report))
    save(report, args.out)
    print(f"wrote {args.out}")
    return 0


def save(report: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
