"""Real, unmodified clients against a running artifact (tiny generated model)."""

from __future__ import annotations

import json
import math
import subprocess

import httpx
import openai
import pytest
from conftest import launch

pytestmark = pytest.mark.usefixtures("built")


@pytest.fixture(scope="module")
def server(tiny_artifact):
    server = launch(tiny_artifact)
    yield server
    server.stop()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused")


MESSAGES = [{"role": "user", "content": "hello"}]


def test_openai_sdk_chat(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8,
                                           seed=3, temperature=0.7)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 8 and reply.usage.prompt_tokens > 0
    two = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8,
                                         seed=3, temperature=0.7, n=2)
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[0].message.content == reply.choices[0].message.content
    assert two.usage.completion_tokens == 16


def test_openai_sdk_chat_stream_with_usage(client):
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 6


def test_openai_sdk_completions_stream_and_not(client):
    # seeded: unseeded, the random tiny model sometimes samples its end token before the 5th
    reply = client.completions.create(model="tiny", prompt="the cat", max_tokens=5, n=2, seed=3)
    assert len(reply.choices) == 2 and reply.usage.completion_tokens == 10
    pieces = list(client.completions.create(model="tiny", prompt="the cat", max_tokens=5,
                                            stream=True))
    assert "".join(p.choices[0].text for p in pieces)
    assert pieces[-1].choices[0].finish_reason == "length"


def test_openai_sdk_embeddings_one_normalised_vector_per_input(client):
    result = client.embeddings.create(model="tiny", input=["hello world", "the cat sat"])
    assert [d.index for d in result.data] == [0, 1]
    for d in result.data:
        assert len(d.embedding) == 64
        assert math.isclose(math.sqrt(sum(v * v for v in d.embedding)), 1.0, rel_tol=1e-4)
    assert result.data[0].embedding != result.data[1].embedding
    # the SDK asks for base64 by default when numpy is present; both must decode alike
    b64 = client.embeddings.create(model="tiny", input="hello world", encoding_format="base64")
    assert b64.data[0].embedding


def test_openai_sdk_models(client):
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_openai_sdk_gets_bad_request_for_a_prompt_longer_than_the_context(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="tiny", messages=[
            {"role": "user", "content": "hello " * 2000}])
    assert error.value.body["code"] == "context_length_exceeded"


def test_stop_sequence_ends_the_answer(client):
    full = client.completions.create(model="tiny", prompt="the cat", max_tokens=20, seed=5,
                                     temperature=0).choices[0].text
    stop = full.strip()[3:6]
    assert stop
    cut = client.completions.create(model="tiny", prompt="the cat", max_tokens=20, seed=5,
                                    temperature=0, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and stop not in cut.text
    assert full.startswith(cut.text)


def test_json_response_format_constrains_the_output(client):
    reply = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}})
    text = reply.choices[0].message.content
    assert text.startswith('{') and '"ok"' in text.replace(" ", "")


def test_second_turn_reuses_the_kv_cache_of_the_first(client):
    first = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5)
    turn2 = MESSAGES + [{"role": "assistant", "content": first.choices[0].message.content},
                        {"role": "user", "content": "and then"}]
    second = client.chat.completions.create(model="tiny", messages=turn2, max_tokens=5)
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1


def test_langchain_llamafile_posts_to_native_completion(server):
    from langchain_community.llms.llamafile import Llamafile

    llm = Llamafile(base_url=server.url, n_predict=6, temperature=0.5, seed=1)
    assert llm.invoke("the cat")
    assert "".join(llm.stream("the cat"))


def test_langchain_chat_openai(server):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=server.url + "/v1", api_key="unused", model="tiny",
                      max_tokens=6)
    assert chat.invoke("hello").content
    assert "".join(c.content for c in chat.stream("hello"))


def test_curl_streams_sse_ending_in_done(server):
    body = json.dumps({"messages": MESSAGES, "stream": True, "max_tokens": 4})
    out = subprocess.run(["curl", "-sN", server.url + "/v1/chat/completions",
                          "-H", "Content-Type: application/json", "-d", body],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    events = [line for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 3


def test_native_tokenize_detokenize_round_trip(server):
    tokens = httpx.post(server.url + "/tokenize", json={"content": "the cat sat"}).json()
    text = httpx.post(server.url + "/detokenize", json=tokens).json()["content"]
    assert text.strip() == "the cat sat"
    bad = httpx.post(server.url + "/detokenize", json={"tokens": [10**9]})
    assert bad.status_code == 400


def test_native_completion_and_embedding(server):
    r = httpx.post(server.url + "/completion", json={"prompt": "the cat", "n_predict": 4})
    assert r.json()["stop"] is True and r.json()["tokens_predicted"] == 4
    vec = httpx.post(server.url + "/embedding", json={"content": "hello"}).json()["embedding"]
    assert len(vec) == 64


def test_embedding_input_over_the_limit_is_a_400_and_the_server_lives(server):
    r = httpx.post(server.url + "/v1/embeddings", json={"input": "hello " * 2000})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert httpx.get(server.url + "/health").status_code == 200
