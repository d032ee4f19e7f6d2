"""The SGLang frontend language (PyPI `sglang`, `sglang.lang`) against our server through
`sgl.RuntimeEndpoint`: constrained `sgl.gen(regex=...)` fullmatches, `sgl.select` picks the choice
with the highest token-length-normalized logprob as our /generate reports it (recomputed here with
our own /generate calls), `max_tokens` bounds a gen, `sgl.user`/`sgl.assistant` multi-turn chat
programs run (plain and streamed), and `run_batch`, `gen(dtype=int)`, `gen(choices=...)`, `fork` and
a regex the server rejects (its 400 as the program's error) behave. No server change was needed:
RuntimeEndpoint uses /get_model_info, /generate (`text` lists, `max_new_tokens: 0`, `return_logprob`,
`logprob_start_len`, `return_text_in_logprobs` -> `[logprob, id, text]` entries) and /flush_cache."""
from __future__ import annotations

import re

import httpx
import pytest

import sglang as sgl  # the `test` extra pins it (pyproject.toml)
from sglang.lang.ir import REGEX_INT  # what gen(dtype=int) sends

REGEX = r"[0-9]{3}-[a-z]{2}"


@pytest.fixture(scope="module")
def backend(structured_server):
    return sgl.RuntimeEndpoint(structured_server.url)


def _generate(url: str, body: dict):
    r = httpx.post(url + "/generate", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _normalized(url: str, prefix: str, choices: list[str]) -> list[float]:
    """What RuntimeEndpoint.select computes, from our own /generate calls: the prompt's token
    count, then each prefix+choice scored from two tokens before the prompt's end (token
    healing), the mean of the logprobs that are set, less the first entry when the prefix already
    ends with that token's text."""
    n = _generate(url, {"text": prefix, "sampling_params": {"max_new_tokens": 0}})
    start = max(n["meta_info"]["prompt_tokens"] - 2, 0)
    outs = _generate(url, {"text": [prefix + c for c in choices],
                           "sampling_params": {"max_new_tokens": 0, "temperature": 0},
                           "return_logprob": True, "return_text_in_logprobs": True,
                           "logprob_start_len": start})
    scores = []
    for o in outs:
        entries = o["meta_info"]["input_token_logprobs"]
        assert all(len(e) == 3 and isinstance(e[1], int) and isinstance(e[2], str)
                   for e in entries), entries
        if prefix.endswith(entries[0][2]):
            entries = entries[1:]
        values = [e[0] for e in entries if e[0]]
        scores.append(sum(values) / len(values))
    return scores


@sgl.function
def code_and_pick(s, question, choices):
    s += question + "\n"
    s += "Code: " + sgl.gen("code", regex=REGEX, max_tokens=32) + "\n"
    s += "Pick: " + sgl.select("pick", choices=choices)


def test_regex_gen_and_select(backend, structured_server):
    choices = ["alpha", "beta", "gamma delta", "42"]
    for q in ("Which one?", "The operator reconciles"):
        state = code_and_pick.run(question=q, choices=choices, backend=backend, temperature=0)
        assert re.fullmatch(REGEX, state["code"]), state["code"]
        assert state["pick"] in choices
        prefix = q + "\nCode: " + state["code"] + "\nPick: "
        assert state.text().startswith(prefix)
        scores = _normalized(structured_server.url, prefix, choices)
        assert state["pick"] == choices[max(range(len(choices)), key=scores.__getitem__)], scores
        meta = state.get_meta_info("pick")
        assert meta["normalized_prompt_logprobs"] == pytest.approx(scores, abs=1e-4)


@sgl.function
def bounded(s, prompt):
    s += prompt + sgl.gen("free", max_tokens=5, temperature=0)


def test_gen_max_tokens_and_batch(backend):
    states = bounded.run_batch([{"prompt": f"Tell me about pods {i}"} for i in range(3)],
                               backend=backend)
    for st in states:
        meta = st.get_meta_info("free")
        assert meta["completion_tokens"] <= 5, meta
        assert st.text().endswith(st["free"])


@sgl.function
def chat(s, first):
    s += sgl.system("You are terse.")
    s += sgl.user(first)
    s += sgl.assistant(sgl.gen("a1", max_tokens=8))
    s += sgl.user("And a code?")
    s += sgl.assistant(sgl.gen("a2", regex=REGEX))
    s += sgl.user("Yes or no?")
    s += sgl.assistant(sgl.select("a3", choices=["yes", "no"]))


@pytest.mark.parametrize("stream", [False, True])
def test_multi_turn_chat(backend, stream):
    state = chat.run(first="Hello", backend=backend, temperature=0, stream=stream)
    if stream:
        pieces = "".join(state.text_iter())  # the whole program, streamed to its end
        assert pieces == state.text()
    msgs = state.messages()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"] + ["user", "assistant"] * 2
    assert [m["content"] for m in msgs[2::2]] == [state[v].strip() for v in ("a1", "a2", "a3")]
    assert state.get_meta_info("a1")["completion_tokens"] <= 8
    assert re.fullmatch(REGEX, state["a2"]), state["a2"]
    assert state["a3"] in ("yes", "no")
    # the frontend's default template (the tiny checkpoint's path matches none of its own)
    assert state.text().startswith("SYSTEM:You are terse.\nUSER:Hello\nASSISTANT:")


@sgl.function
def typed_and_forked(s):
    s += "Count: " + sgl.gen("n", dtype=int) + "\n"
    s += "Pick: " + sgl.gen("g", choices=["red", "green"]) + "\n"
    forks = s.fork(2)
    for i, f in enumerate(forks):
        f += f"Code {i}: " + sgl.gen("code", regex=REGEX)
    forks.join()
    s += "Codes: " + forks[0]["code"] + " " + forks[1]["code"]


def test_dtype_gen_choices_and_fork(backend):
    state = typed_and_forked.run(backend=backend, temperature=0)
    assert re.fullmatch(REGEX_INT, state["n"]) and state["n"].strip(), state["n"]
    assert state["g"] in ("red", "green")
    codes = state.text().rsplit("Codes: ", 1)[1].split(" ")
    assert len(codes) == 2 and all(re.fullmatch(REGEX, c) for c in codes), codes


@sgl.function
def lookahead(s):
    s += "x" + sgl.gen("x", regex="(?=a)a")  # valid Python, not a regex xgrammar accepts


@pytest.mark.filterwarnings("ignore:Error in stream_executor")
def test_bad_regex_is_the_servers_400(backend):
    err = lookahead.run(backend=backend).error()  # the frontend keeps the backend's exception
    assert isinstance(err, RuntimeError) and "sampling_params.regex" in str(err), err
