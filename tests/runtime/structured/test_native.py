"""SGLang's native constrained decoding through /generate: json_schema, regex and ebnf outputs are
valid for every sample (greedy and temperature 1.0 over many seeds), free requests in the same batch
get exactly their solo greedy output, bad constraints are 400s naming the field, an aborted
constrained stream leaves the server serving."""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.structured import REGEX, SCHEMAS, validate

SEEDS = range(12)


def _generate(url: str, texts: list[str], params: list[dict]) -> list[dict]:
    r = httpx.post(url + "/generate", json={"text": texts, "sampling_params": params}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def _sampled(constraint: dict, max_new: int = 320) -> list[dict]:
    """Greedy plus temperature 1.0 with each seed."""
    return [{"max_new_tokens": max_new, "temperature": 0.0, **constraint}] + \
        [{"max_new_tokens": max_new, "temperature": 1.0, "sampling_seed": s, **constraint}
         for s in SEEDS]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schema_outputs_validate(structured_server, name):
    params = _sampled({"json_schema": json.dumps(SCHEMAS[name])})
    texts = [f"Give me {name} number {i}:" for i in range(len(params))]
    outs = _generate(structured_server.url, texts, params)
    for out in outs:
        assert out["meta_info"]["finish_reason"]["type"] == "stop", out
        validate(out["text"], SCHEMAS[name])


def test_regex_and_ebnf_outputs_match(structured_server):
    params = _sampled({"regex": REGEX}, 40)
    outs = _generate(structured_server.url, [f"code {i}" for i in range(len(params))], params)
    assert all(re.fullmatch(REGEX, o["text"]) for o in outs), [o["text"] for o in outs]
    ebnf = 'root ::= "yes" | "no" | ("maybe " [0-9] [0-9]?)'
    params = _sampled({"ebnf": ebnf}, 20)
    outs = _generate(structured_server.url, [f"answer {i}" for i in range(len(params))], params)
    assert all(re.fullmatch(r"yes|no|maybe [0-9][0-9]?", o["text"]) for o in outs)


def test_free_requests_in_a_mixed_batch_get_their_solo_output(structured_server):
    url = structured_server.url
    free = [f"The operator watches pods {i}" for i in range(4)]
    solo = [_generate(url, [t], [{"max_new_tokens": 24, "temperature": 0}])[0] for t in free]
    texts, params = [], []
    for i, t in enumerate(free):
        texts += [t, f"json please {i}"]
        params += [{"max_new_tokens": 24, "temperature": 0},
                   {"max_new_tokens": 320, "temperature": 1.0, "sampling_seed": i,
                    "json_schema": json.dumps(SCHEMAS["order"])}]
    mixed = _generate(url, texts, params)
    assert [o["output_ids"] for o in mixed[::2]] == [o["output_ids"] for o in solo]
    for o in mixed[1::2]:
        validate(o["text"], SCHEMAS["order"])


@pytest.mark.parametrize("params,field,needle", [
    ({"json_schema": "{nope"}, "sampling_params.json_schema", "not valid JSON"),
    ({"json_schema": '{"type": "wat"}'}, "sampling_params.json_schema", "Unsupported type"),
    ({"json_schema": '{"type": "string", "pattern": "[a-"}'}, "sampling_params.json_schema", "invalid"),
    ({"regex": "[0-9"}, "sampling_params.regex", "Unclosed"),
    ({"ebnf": "root ::= undefined_rule"}, "sampling_params.ebnf", "undefined_rule"),
    ({"regex": "a", "json_schema": "{}"}, "sampling_params", "at most one"),
])
def test_bad_constraints_are_400s_and_the_batch_goes_on(structured_server, params, field, needle):
    url = structured_server.url
    body = {"text": "The quick brown fox", "sampling_params": {"max_new_tokens": 16, "temperature": 0}}
    expected = httpx.post(url + "/generate", json=body, timeout=60).json()["output_ids"]
    with ThreadPoolExecutor(2) as pool:
        good = pool.submit(httpx.post, url + "/generate", json=body, timeout=60)
        bad = httpx.post(url + "/generate", json={"text": "x", "sampling_params": params}, timeout=60)
        assert good.result().json()["output_ids"] == expected
    assert bad.status_code == 400, bad.text
    err = bad.json()["error"]
    assert err["param"] == field and needle in err["message"], err


def test_an_aborted_constrained_stream_leaves_the_server_serving(structured_server):
    url = structured_server.url
    schema = json.dumps(SCHEMAS["order"])
    with httpx.stream("POST", url + "/generate", timeout=60, json={
            "text": "abort me", "stream": True,
            "sampling_params": {"max_new_tokens": 300, "json_schema": schema}}) as r:
        next(r.iter_lines())  # leave mid-JSON: the request is aborted
    [out] = _generate(url, ["after the abort"], [{"max_new_tokens": 320, "json_schema": schema}])
    validate(out["text"], SCHEMAS["order"])
