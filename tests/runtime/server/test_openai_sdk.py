"""The OpenAI Python SDK against a real server: chat, completions, streaming, models, embeddings."""
import base64
import struct

import openai
import pytest

pytestmark = pytest.mark.runtime  # starts real server processes


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_chat_completion_and_cached_prefix(client, server):
    messages = [{"role": "system", "content": "You are a helpful assistant. " * 8},
                {"role": "user", "content": "What is a radix tree?"}]
    first = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8,
                                           temperature=0)
    again = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8,
                                           temperature=0)
    assert first.object == "chat.completion"
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].message.content == again.choices[0].message.content  # greedy
    assert first.choices[0].finish_reason in ("stop", "length")
    assert first.usage.completion_tokens <= 8
    assert again.usage.prompt_tokens_details.cached_tokens > 0.8 * again.usage.prompt_tokens


def test_chat_stream_matches_non_stream(client):
    messages = [{"role": "user", "content": "Tell me about Kubernetes pods."}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12,
                                           temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=12,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_batch_n_echo_logprobs_and_stop(client):
    r = client.completions.create(model="tiny", prompt=["The quick brown fox", "def fibonacci(n):"],
                                  max_tokens=6, temperature=0, n=2, logprobs=2, echo=True)
    assert len(r.choices) == 4 and [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text.startswith("The quick brown fox")
    assert r.choices[0].text == r.choices[1].text  # greedy samples agree
    assert r.choices[2].text.startswith("def fibonacci(n):")
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert all(len(t) <= 2 for t in lp.top_logprobs)
    # Stop at a string the greedy continuation is known to contain.
    plain = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=6,
                                      temperature=0).choices[0].text
    stop = plain[len(plain) // 2:][:3]
    stopped = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=6,
                                        temperature=0, stop=[stop])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].model_extra["matched_stop"] == stop
    assert stop not in stopped.choices[0].text and plain.startswith(stopped.choices[0].text)


def test_completion_stream(client):
    whole = client.completions.create(model="tiny", prompt=[1, 2, 3, 4], max_tokens=10,
                                      temperature=0).choices[0].text
    parts = list(client.completions.create(model="tiny", prompt=[1, 2, 3, 4], max_tokens=10,
                                           temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in parts) == whole
    assert parts[-1].choices[0].finish_reason == "length"


def test_models_and_embeddings(client, server, tiny_model):
    [card] = client.models.list().data
    assert card.id == str(tiny_model) and card.owned_by == "sglang"
    assert card.model_extra["max_model_len"] == 2048
    assert client.models.retrieve(card.id).id == card.id
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    emb = client.embeddings.create(model=card.id, input=["hello world", "radix tree"])
    assert [d.index for d in emb.data] == [0, 1]
    assert len(emb.data[0].embedding) == 64 and emb.data[0].embedding != emb.data[1].embedding
    assert emb.usage.prompt_tokens > 0
    b64 = client.embeddings.create(model=card.id, input="hello world", encoding_format="base64")
    raw = base64.b64decode(b64.data[0].embedding)
    assert struct.unpack(f"<{len(raw) // 4}f", raw) == pytest.approx(emb.data[0].embedding,
                                                                      abs=1e-5)
