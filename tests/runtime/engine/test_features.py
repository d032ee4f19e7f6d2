"""Engine features beyond plain greedy: stop strings and ids, EOS, min/max tokens, prefill-only
requests, logprobs and embeddings against HF, seeds, errors, queue limit, abort, flush, shutdown."""
from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest
import torch

from radix_runtime.core.errors import InvalidRequestError, QueueFullError
from radix_runtime.core.request import EngineRequest, SamplingParams

from tests.support.hf import hf_greedy
from tests.support.waiting import wait_for

from .helpers import collect, greedy, make_engine, shutdown

PROMPT = "Once upon a time there was a little robot"


@pytest.fixture(scope="module")
def engine(tiny_models):
    e = make_engine(tiny_models["llama"], max_total_tokens=4096)
    yield e
    e.check_integrity()
    shutdown(e)


def _run(engine, rid, ids, sampling, **kw):
    out, _ = asyncio.run(collect(engine, EngineRequest(rid, ids, sampling, **kw)))
    return out


def test_stop_strings_and_stop_ids(engine):
    ids = engine.tokenizer.encode(PROMPT)
    full = _run(engine, "full", ids, greedy(24, ignore_eos=True))
    text = full.text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    idx = text.index(stop)
    out = _run(engine, "ss", ids, greedy(24, ignore_eos=True, stop=["zzzz-never", stop]))
    assert out.finish_reason == {"type": "stop", "matched": stop}
    assert out.text == text[:idx] and full.output_ids[:len(out.output_ids)] == out.output_ids
    kept = _run(engine, "ss2", ids, greedy(24, ignore_eos=True, stop=[stop], no_stop_trim=True))
    assert kept.text.startswith(text[:idx] + stop) and kept.output_ids == out.output_ids
    tid = full.output_ids[5]
    first = full.output_ids.index(tid)
    out = _run(engine, "sid", ids, greedy(24, ignore_eos=True, stop_token_ids=[tid]))
    assert out.finish_reason == {"type": "stop", "matched": tid}
    assert out.output_ids == full.output_ids[:first + 1]  # the stop token is reported in the ids
    assert out.text == engine.tokenizer.decode(full.output_ids[:first])  # and trimmed from the text


def test_eos_ignore_eos_and_min_new_tokens(engine):
    ids = engine.tokenizer.encode(PROMPT)
    eos = min(engine.eos_token_ids)
    push_eos = {eos: 100.0}  # make EOS the argmax at every step
    out = _run(engine, "eos", ids, greedy(10, logit_bias=push_eos))
    assert out.output_ids == [eos] and out.finish_reason == {"type": "stop", "matched": eos}
    assert out.text == ""
    out = _run(engine, "ign", ids, greedy(10, logit_bias=push_eos, ignore_eos=True))
    assert out.output_ids == [eos] * 10 and out.finish_reason == {"type": "length", "length": 10}
    out = _run(engine, "min", ids, greedy(10, logit_bias=push_eos, min_new_tokens=3))
    assert len(out.output_ids) == 4 and eos not in out.output_ids[:3] and out.output_ids[3] == eos


def test_max_new_tokens_zero_prefills_and_caches(engine):
    ids = engine.tokenizer.encode("A prefix that a client warms up with max_new_tokens zero, 12345.")
    before = engine.stats()
    out = _run(engine, "warm", ids, greedy(0))
    assert out.finished and out.output_ids == [] and out.finish_reason == {"type": "length", "length": 0}
    again = _run(engine, "use", ids + [7, 8], greedy(3))
    assert again.cached_tokens == len(ids)
    st = engine.stats()
    assert st.prompt_tokens_total - before.prompt_tokens_total == 2 * len(ids) + 2
    # (the warm-up itself may hit a little: BOS and the like are cached by earlier tests)
    assert st.cached_tokens_total - before.cached_tokens_total == out.cached_tokens + len(ids)


def test_logprobs_match_hf(engine, hf_models):
    hf = hf_models["llama"]
    ids = engine.tokenizer.encode(PROMPT)
    out = _run(engine, "lp", ids, greedy(6), return_logprob=True, top_logprobs_num=3, logprob_start_len=0)
    with torch.no_grad():
        gen = hf.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, output_logits=True,
                          return_dict_in_generate=True)
        ref = [torch.log_softmax(l[0].float(), -1) for l in gen.logits]
        prompt_lp = torch.log_softmax(hf(torch.tensor([ids])).logits[0].float(), -1)
    assert [t for _, t in out.output_token_logprobs] == out.output_ids == gen.sequences[0, len(ids):].tolist()
    for (lp, t), r, top in zip(out.output_token_logprobs, ref, out.output_top_logprobs):
        assert abs(lp - r[t].item()) < 1e-4
        assert [i for _, i in top] == r.topk(3).indices.tolist()
    assert out.input_token_logprobs[0] == (None, ids[0])
    for k, (lp, t) in enumerate(out.input_token_logprobs[1:], start=1):
        assert t == ids[k] and abs(lp - prompt_lp[k - 1, t].item()) < 1e-4
    assert len(out.input_token_logprobs) == len(ids)
    # from position 3 on, with the prompt already cached: still computed where needed
    part = _run(engine, "lp3", ids, greedy(2), return_logprob=True, logprob_start_len=3)
    assert [t for _, t in part.input_token_logprobs] == ids[3:]
    for k, (lp, t) in enumerate(part.input_token_logprobs, start=3):
        assert abs(lp - prompt_lp[k - 1, t].item()) < 1e-4
    assert part.output_token_logprobs[0][1] == out.output_ids[0] and part.output_top_logprobs is None


def test_embedding_matches_hf_last_hidden_state(engine, hf_models):
    ids = engine.tokenizer.encode("embed this sentence")
    out = _run(engine, "emb", ids, SamplingParams(max_new_tokens=0), embedding=True)
    with torch.no_grad():
        h = hf_models["llama"](torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
    ref = torch.nn.functional.normalize(h.float(), dim=-1)
    assert out.finished and out.output_ids == []
    assert torch.allclose(torch.tensor(out.embedding), ref, atol=1e-5)


def test_seeded_sampling_is_reproducible(engine):
    ids = engine.tokenizer.encode(PROMPT)
    p = SamplingParams(max_new_tokens=12, temperature=0.9, top_p=0.95, top_k=50, seed=1234)

    async def both():
        return await asyncio.gather(collect(engine, EngineRequest("s1", ids, p)),
                                    collect(engine, EngineRequest("s2", ids, p)))

    (a, _), (b, _) = asyncio.run(both())
    c = _run(engine, "s3", ids, p)
    assert a.output_ids == b.output_ids == c.output_ids
    d = _run(engine, "s4", ids, SamplingParams(max_new_tokens=12, temperature=0.9, seed=99))
    assert len(d.output_ids) == 12 or d.finish_reason["type"] == "stop"


def test_invalid_requests(engine):
    ids = engine.tokenizer.encode(PROMPT)
    with pytest.raises(InvalidRequestError) as e:
        _run(engine, "long", [5] * engine.context_length, greedy(1))
    assert e.value.field == "input_ids"
    with pytest.raises(InvalidRequestError) as e:
        _run(engine, "many", ids, greedy(engine.context_length))
    assert e.value.field == "max_new_tokens"
    with pytest.raises(InvalidRequestError):
        _run(engine, "vocab", [engine.tokenizer.vocab_size + 5], greedy(1))
    with pytest.raises(InvalidRequestError):
        _run(engine, "empty", [], greedy(1))
    engine.check_integrity()


def test_queue_limit_abort_and_flush(tiny_models):
    e = make_engine(tiny_models["llama"], max_total_tokens=4096, max_running_requests=1, max_queued_requests=2)
    ids = e.tokenizer.encode(PROMPT)
    long = greedy(1500, ignore_eos=True)

    async def main():
        first = aclosing(e.generate(EngineRequest("q1", ids, long)))
        stream = await first.__aenter__()
        out = await stream.__anext__()  # q1 runs
        assert not out.finished
        assert not e.flush_cache()  # refused while a request runs
        waiters = [asyncio.create_task(collect(e, EngineRequest(f"q{i}", ids, greedy(2)))) for i in (2, 3)]
        while e.num_waiting() < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(QueueFullError):
            await collect(e, EngineRequest("q4", ids, greedy(2)))
        assert e.abort("q2")
        o2, _ = await waiters[0]
        assert o2.finish_reason["type"] == "abort"
        await first.__aexit__(None, None, None)  # closing the stream aborts q1 and frees its KV
        o3, _ = await waiters[1]
        assert o3.finish_reason == {"type": "length", "length": 2}

    try:
        asyncio.run(main())
        wait_for(lambda: not e.scheduler.has_work(), interval=0.005)
        e.check_integrity()
        st = e.stats()
        assert st.num_running_reqs == 0 and st.cache_usage > 0
        assert time.monotonic() - st.last_step_time < 5
        assert e.flush_cache() and e.stats().cache_usage == 0 and e.stats().token_usage == 0
        e.check_integrity()
    finally:
        shutdown(e)


def test_shutdown_aborts_running_requests(tiny_models):
    e = make_engine(tiny_models["llama"], max_total_tokens=4096)
    ids = e.tokenizer.encode(PROMPT)

    async def main():
        task = asyncio.create_task(collect(e, EngineRequest("sd", ids, greedy(1800, ignore_eos=True))))
        while e.stats().generation_tokens_total == 0:
            await asyncio.sleep(0.001)
        await e.shutdown()
        out, _ = await task
        assert out.finish_reason["type"] == "abort" and "shutting down" in out.finish_reason["message"]

    asyncio.run(main())
    assert not e._thread.is_alive()


def test_a_failing_step_aborts_its_requests_and_the_engine_goes_on(tiny_models, capfd):
    e = make_engine(tiny_models["llama"], max_total_tokens=4096)
    ids = e.tokenizer.encode(PROMPT)
    calls = {"n": 0}

    def flaky(real):  # the forward of a planned step or of a pure-decode batch
        def call(batch):
            calls["n"] += 1
            if calls["n"] == 3:  # mid-decode
                raise RuntimeError("simulated device failure")
            return real(batch)
        return call

    e.runner.forward, e.runner.forward_decode = flaky(e.runner.forward), flaky(e.runner.forward_decode)
    try:
        out = _run(e, "boom", ids, greedy(10, ignore_eos=True))
        assert out.finish_reason["type"] == "abort" and "simulated device failure" in out.finish_reason["message"]
        assert "simulated device failure" in capfd.readouterr().err  # the traceback is logged
        e.check_integrity()
        again = _run(e, "after", ids, greedy(10, ignore_eos=True))
        assert again.finish_reason == {"type": "length", "length": 10}
        e.check_integrity()
    finally:
        shutdown(e)
