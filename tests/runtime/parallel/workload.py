"""The same requests against any server: shared prefixes (radix hits), a batch, input logprobs,
seeded sampling, chat, an embedding. A group and a single process must agree token for token."""
from __future__ import annotations

import httpx

PREFIX = "You are a helpful assistant. The operator watches its custom resources and"
GREEDY = {"temperature": 0, "max_new_tokens": 12, "ignore_eos": True}


def _generate(client: httpx.Client, body: dict):
    r = client.post("/generate", json=body)
    r.raise_for_status()
    return r.json()


def run_workload(url: str) -> list[dict]:
    out = []
    with httpx.Client(base_url=url, timeout=60) as c:
        for text in (PREFIX + " reconciles them.", PREFIX + " a radix tree shares"):
            r = _generate(c, {"text": text, "sampling_params": GREEDY})
            out.append({"ids": r["output_ids"], "cached": r["meta_info"]["cached_tokens"]})
        batch = _generate(c, {"text": ["Once upon a time", "def fibonacci(n):", PREFIX + " the year"],
                              "sampling_params": {**GREEDY, "max_new_tokens": 16}})
        out += [{"ids": r["output_ids"], "cached": r["meta_info"]["cached_tokens"]} for r in batch]
        r = _generate(c, {"text": "Kubernetes runs containers in pods", "sampling_params": GREEDY,
                          "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 3})
        m = r["meta_info"]
        out.append({"ids": r["output_ids"], "cached": m["cached_tokens"],
                    "input_lp": [lp for lp, _, *_ in m["input_token_logprobs"]],
                    "output_lp": [lp for lp, _, *_ in m["output_token_logprobs"]]})
        # sampled, not greedy: rank 0 alone draws, so a seed gives the single process's tokens
        r = _generate(c, {"text": "Once upon a time", "sampling_params": {
            "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 12, "sampling_seed": 7}})
        out.append({"ids": r["output_ids"], "cached": r["meta_info"]["cached_tokens"]})
        chat = c.post("/v1/chat/completions", json={
            "model": "x", "messages": [{"role": "user", "content": "Write a haiku about autumn."}],
            "max_tokens": 10, "temperature": 0})
        chat.raise_for_status()
        out.append({"text": chat.json()["choices"][0]["message"]["content"]})
        emb = c.post("/v1/embeddings", json={"model": "x", "input": "The quick brown fox"})
        emb.raise_for_status()  # the last stage's final hidden state, shipped to rank 0
        out.append({"embedding": emb.json()["data"][0]["embedding"]})
    return out


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.get("ids") == w.get("ids") and g.get("text") == w.get("text")
        assert g.get("cached") == w.get("cached")
        if "embedding" in w:
            assert len(g["embedding"]) == len(w["embedding"])
            assert max(abs(a - b) for a, b in zip(g["embedding"], w["embedding"])) < 1e-4
        for key in ("input_lp", "output_lp"):
            if key in w:
                assert [x is None for x in g[key]] == [x is None for x in w[key]]
                for a, b in zip(g[key], w[key]):
                    assert a is None or abs(a - b) < 1e-3, (key, a, b)
