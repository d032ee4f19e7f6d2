"""Speculative decoding on real tiny checkpoints: greedy output equals non-speculative decoding
token for token (the target as its own draft accepts every draft; a different draft or n-gram
lookup only changes how many are accepted), under continuous batching, chunked prefill, radix-cache
hits, retraction and abort; sampled output keeps the target's distribution (chi-square against the
target's exact probabilities from non-speculative runs' logprobs)."""
from __future__ import annotations

import asyncio
import math

import pytest
import torch

from radix_runtime.core.request import EngineRequest, SamplingParams

from .helpers import collect, greedy, make_engine, run_all, shutdown

NEW = 20


def prompts() -> list[list[int]]:
    shared = [(11 * j) % 700 + 3 for j in range(24)]
    out = [[(i * 37 + j * 13) % 700 + 3 for j in range(4 + 3 * i)] for i in range(16)]
    out += [shared + [100 + i] for i in range(6)]  # radix-cache hits
    out += [[5, 6, 7, 8] * 6 + [5, 6]]  # n-gram lookup finds something
    return out


def decode_all(model, **flags):
    e = make_engine(model, **flags)
    try:
        reqs = [EngineRequest(rid=f"r{i}", input_ids=p, sampling=greedy(NEW, ignore_eos=True))
                for i, p in enumerate(prompts())]
        outs = asyncio.run(run_all(e, reqs))
        e.check_integrity()
        return [o.output_ids for o in outs], e.stats()
    finally:
        shutdown(e)


@pytest.fixture(scope="module")
def baseline(tiny_model):
    return decode_all(tiny_model, chunked_prefill_size=32)[0]


@pytest.fixture(scope="module")
def small_draft(tiny_models):
    return tiny_models.get("llama", seed=11, hidden_size=32, num_layers=1, intermediate_size=64)


@pytest.fixture(scope="module")
def near_draft(tiny_model, tmp_path_factory):
    """The target's weights with noise: a draft that agrees with the target often, not always."""
    import shutil

    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("near-draft")
    for f in tiny_model.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, out / f.name)
    g = torch.Generator().manual_seed(0)
    for f in tiny_model.glob("*.safetensors"):
        w = load_file(f)
        save_file({k: v * (1 + 0.1 * torch.randn(v.shape, generator=g)) for k, v in w.items()},
                  out / f.name)
    return out


def test_target_as_its_own_draft_accepts_everything(tiny_model, baseline):
    outs, st = decode_all(tiny_model, chunked_prefill_size=32, speculative_algorithm="STANDALONE",
                          speculative_draft_model_path=str(tiny_model), speculative_num_steps=4)
    assert outs == baseline
    assert st.spec_draft_tokens_total > 0
    assert st.spec_accepted_tokens_total == st.spec_draft_tokens_total  # 100%
    assert st.generation_tokens_total == NEW * len(baseline)


@pytest.mark.parametrize("algo", ["STANDALONE", "NGRAM"])
def test_other_drafts_give_identical_greedy_output(tiny_model, small_draft, baseline, algo):
    flags = {"speculative_algorithm": algo}
    if algo == "STANDALONE":
        flags["speculative_draft_model_path"] = str(small_draft)
    # a small pool: requests get retracted and draft slots are scarce
    outs, st = decode_all(tiny_model, chunked_prefill_size=32, max_total_tokens=400, **flags)
    assert outs == baseline
    assert st.spec_drafts_total > 0
    assert st.num_retractions_total > 0


def test_abort_mid_speculation_frees_everything(tiny_model):
    e = make_engine(tiny_model, speculative_algorithm="STANDALONE",
                    speculative_draft_model_path=str(tiny_model))

    async def main():
        req = EngineRequest(rid="a", input_ids=[3, 4, 5], sampling=greedy(500, ignore_eos=True))
        gen = e.generate(req)
        async for out in gen:
            if len(out.output_ids) >= 8:
                break
        await gen.aclose()  # the client went away: abort
        while e.stats().num_running_reqs:
            await asyncio.sleep(0.01)

    try:
        asyncio.run(main())
        e.check_integrity()
    finally:
        shutdown(e)


def _exact(tiny_model, prompt, top_k, depth):
    """The target's probability of each output prefix of `depth` tokens under temperature 1 and
    top_k, from a non-speculative engine's top logprobs (renormalized over the top k)."""
    e = make_engine(tiny_model)

    def top(ids):
        req = EngineRequest(rid=f"p{len(ids)}-{ids[-1]}", input_ids=ids, sampling=greedy(1),
                            return_logprob=True, top_logprobs_num=top_k)
        out, _ = asyncio.run(collect(e, req))
        pairs = out.output_top_logprobs[0]
        z = sum(math.exp(lp) for lp, _ in pairs)
        return {t: math.exp(lp) / z for lp, t in pairs}

    try:
        probs = {(): 1.0}
        for _ in range(depth):
            probs = {seq + (t,): p * pt for seq, p in probs.items() for t, pt in top(prompt + list(seq)).items()}
        return probs
    finally:
        shutdown(e)


def _chi2_critical(df: int, z: float = 3.09) -> float:
    """The chi-square distribution's upper 0.001 point (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("algo", ["STANDALONE", "NGRAM"])
def test_sampling_keeps_the_targets_distribution(tiny_model, near_draft, algo):
    # the first token comes from the prefill; the next two from one round verifying two drafts
    # NGRAM: 150 distinct token ids, so the lookup often finds the last token
    prompt = torch.randperm(740, generator=torch.Generator().manual_seed(1)).add(3).tolist()[:150]
    if algo == "STANDALONE":
        prompt = prompt[:10]
    top_k, n = 3, 400
    exact = _exact(tiny_model, prompt, top_k, 3)
    flags = {"speculative_algorithm": algo, "speculative_num_steps": 2}
    if algo == "STANDALONE":
        flags["speculative_draft_model_path"] = str(near_draft)
    e = make_engine(tiny_model, **flags)
    try:
        reqs = [EngineRequest(rid=f"s{i}", input_ids=prompt, sampling=SamplingParams(
                    max_new_tokens=4, temperature=1.0, top_k=top_k, ignore_eos=True, seed=i))
                for i in range(n)]
        outs = asyncio.run(run_all(e, reqs))
        st = e.stats()
    finally:
        shutdown(e)
    counts: dict[tuple, int] = {}
    for o in outs:
        key = tuple(o.output_ids[:3])
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) <= set(exact), "a sequence the target never samples"
    assert st.spec_accepted_tokens_total < st.spec_draft_tokens_total  # rejections happened
    if algo == "STANDALONE":  # and acceptances (NGRAM's one-hot drafts: tests/unit/runtime)
        assert st.spec_accepted_tokens_total > 0
    # cells expecting fewer than 5 pooled into one
    big = [c for c in exact if exact[c] * n >= 5]
    obs = [counts.get(c, 0) for c in big] + [n - sum(counts.get(c, 0) for c in big)]
    exp = [exact[c] * n for c in big] + [n * (1 - sum(exact[c] for c in big))]
    cells = [(o, x) for o, x in zip(obs, exp) if x > 1e-9]
    chi2 = sum((o - x) ** 2 / x for o, x in cells)
    assert chi2 < _chi2_critical(len(cells) - 1), (chi2, len(cells), counts, exact)


def test_logprobs_under_speculation_match_plain_decoding(tiny_model):
    def run(**flags):
        e = make_engine(tiny_model, **flags)
        try:
            req = EngineRequest(rid="lp", input_ids=[7, 8, 9, 10], sampling=greedy(12, ignore_eos=True),
                                return_logprob=True, top_logprobs_num=3)
            out, _ = asyncio.run(collect(e, req))
            return out, e.stats()
        finally:
            shutdown(e)

    plain, _ = run()
    spec, st = run(speculative_algorithm="STANDALONE", speculative_draft_model_path=str(tiny_model))
    assert st.spec_accepted_tokens_total > 0  # the logprobs came from verify passes
    assert spec.output_ids == plain.output_ids
    assert [t for _, t in spec.output_token_logprobs] == plain.output_ids
    for (a, _), (b, _) in zip(spec.output_token_logprobs, plain.output_token_logprobs):
        assert a == pytest.approx(b, abs=1e-4)
    for ta, tb in zip(spec.output_top_logprobs, plain.output_top_logprobs):
        assert [t for _, t in ta] == [t for _, t in tb]
        assert [v for v, _ in ta] == pytest.approx([v for v, _ in tb], abs=1e-4)
