"""Ollama's own clients, unmodified, against real artifacts run as subprocesses: the official
`ollama` Python client and LangChain's ChatOllama, OllamaLLM and OllamaEmbeddings."""

from __future__ import annotations

import json
import math
import socket
import time

import httpx
import ollama
import pytest
from conftest import free_port, launch
from langchain_ollama import ChatOllama, OllamaEmbeddings, OllamaLLM
from pydantic import BaseModel

pytestmark = pytest.mark.usefixtures("built")

DEMO = "gemma-3-270m-q4_k_m"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def demo(demo_artifact):
    server = launch(demo_artifact, "--ollama-port", "0")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(demo) -> ollama.Client:
    return ollama.Client(host=demo.url)


# ---- the ollama package


@pytest.mark.slow
def test_ollama_list_show_ps_version(client, demo):
    (model,) = client.list().models
    assert model.model == f"{DEMO}:latest" and model.details.family == "gemma3"
    assert model.details.quantization_level == "Q4_K_M"
    assert model.details.parameter_size.endswith("M") and model.size > 200_000_000
    shown = client.show(DEMO)
    assert shown.modelinfo["general.architecture"] == "gemma3"
    assert shown.modelinfo["gemma3.context_length"] == 4096  # the served context
    assert "completion" in shown.capabilities and shown.details.format == "gguf"
    (running,) = client.ps().models
    assert running.model == f"{DEMO}:latest" and running.context_length == 4096
    assert httpx.get(demo.url + "/api/version").json()["version"].count(".") == 2


@pytest.mark.slow
def test_ollama_chat_unary_and_streamed_agree(client):
    options = {"temperature": 0, "num_predict": 12}
    # Both answers read the prompt the same way: from the cache, but for its last token. A
    # prompt read whole goes through other kernels (a batch of rows) than its last token read
    # alone, and the demo base model's next tokens are near-ties that this can flip (on an AMD
    # EPYC Zen 3 "修理" against " siebie", whichever kernel rule was forced).
    client.chat(model=DEMO, messages=QUESTION, options={"temperature": 0, "num_predict": 1})
    whole = client.chat(model=DEMO, messages=QUESTION, options=options)
    assert whole.done and whole.message.role == "assistant" and whole.message.content.strip()
    assert whole.eval_count == 12 and whole.done_reason == "length"
    assert whole.prompt_eval_count > 5 and whole.total_duration > whole.eval_duration > 0
    parts = list(client.chat(model=f"{DEMO}:latest", messages=QUESTION, options=options,
                             stream=True))
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].eval_count == 12


@pytest.mark.slow
def test_ollama_generate_with_system_and_raw(client, demo):
    answer = client.generate(model=DEMO, prompt="Name a color.", system="Answer in one word.",
                             options={"temperature": 0, "num_predict": 6})
    assert answer.response.strip() and answer.done_reason in ("stop", "length")
    raw = "".join(p.response for p in client.generate(
        model=DEMO, prompt="The capital of France is", raw=True, stream=True,
        options={"temperature": 0, "num_predict": 4}))
    # raw: the text continued as is, exactly as llama.cpp's /completion continues it
    native = httpx.post(demo.url + "/completion", json={
        "prompt": "The capital of France is", "n_predict": 4, "temperature": 0}).json()
    assert raw.strip() and raw == native["content"]


@pytest.mark.slow
def test_ollama_format_schema_constrains_the_answer(client):
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 20},
                                               "european": {"type": "boolean"}},
              "required": ["capital", "european"]}
    reply = client.chat(model=DEMO, messages=QUESTION, format=schema,
                        options={"temperature": 0, "num_predict": 60})
    answer = json.loads(reply.message.content)
    assert set(answer) == {"capital", "european"} and isinstance(answer["european"], bool)


@pytest.mark.slow
def test_ollama_embed_and_legacy_embeddings(client):
    embedded = client.embed(model=DEMO, input=["the cat sat", "a dog ran"])
    first, second = embedded.embeddings
    assert len(first) == len(second) == 640
    assert math.isclose(math.fsum(v * v for v in first), 1.0, rel_tol=1e-4)
    assert first != second
    legacy = client.embeddings(model=DEMO, prompt="the cat sat").embedding
    assert max(abs(a - b) for a, b in zip(legacy, first, strict=True)) < 1e-4


@pytest.mark.slow
def test_ollama_unknown_model_is_a_response_error(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="llama3.2", messages=QUESTION)
    assert e.value.status_code == 404 and "llama3.2" in e.value.error


# ---- LangChain


@pytest.mark.slow
def test_chat_ollama_invoke_and_stream(demo):
    chat = ChatOllama(model=DEMO, base_url=demo.url, temperature=0, num_predict=10,
                      validate_model_on_init=True)
    reply = chat.invoke("What is the capital of France?")
    assert reply.content.strip()
    assert reply.usage_metadata["output_tokens"] == 10 and reply.usage_metadata["input_tokens"] > 5
    assert reply.response_metadata["done_reason"] == "length"
    chunks = list(chat.stream("What is the capital of France?"))
    assert len(chunks) > 2 and "".join(c.content for c in chunks) == reply.content


class Capital(BaseModel):
    city: str
    in_europe: bool


@pytest.mark.slow
def test_chat_ollama_structured_output_uses_format(demo):
    chat = ChatOllama(model=DEMO, base_url=demo.url, temperature=0, num_predict=80)
    answer = chat.with_structured_output(Capital).invoke(
        "Which city is the capital of France? Is it in Europe?")
    assert isinstance(answer, Capital) and answer.city


@pytest.mark.slow
def test_ollama_llm_invoke_and_stream(demo):
    llm = OllamaLLM(model=DEMO, base_url=demo.url, temperature=0, num_predict=8)
    text = llm.invoke("The capital of France is")
    assert text.strip()
    assert "".join(llm.stream("The capital of France is")) == text


@pytest.mark.slow
def test_ollama_embeddings(demo):
    embeddings = OllamaEmbeddings(model=DEMO, base_url=demo.url)
    docs = embeddings.embed_documents(["the cat sat on the mat", "stock prices fell"])
    query = embeddings.embed_query("where did the cat sit?")
    assert len(docs) == 2 and len(query) == len(docs[0]) == 640
    cosine = [sum(a * b for a, b in zip(query, d, strict=True)) for d in docs]
    assert cosine[0] > cosine[1]


# ---- the chat template of a real instruct model


@pytest.mark.slow
def test_instruct_model_answers_through_its_template(instruct_ollama):
    client = ollama.Client(host=instruct_ollama.url)
    name = client.list().models[0].model
    reply = client.chat(model=name, messages=[
        {"role": "system", "content": "Answer with one word."}] + QUESTION,
        options={"temperature": 0, "num_predict": 16})
    assert "Paris" in reply.message.content and reply.done_reason == "stop"
    assert "<|im_end|>" not in reply.message.content
    chat = ChatOllama(model=name.removesuffix(":latest"), base_url=instruct_ollama.url,
                      temperature=0, num_predict=60)
    answer = chat.with_structured_output(Capital).invoke(
        "Which city is the capital of France? Is it in Europe?")
    assert answer == Capital(city="Paris", in_europe=True)


# ---- Ollama's port


def test_ollama_port_answers_ollama_clients(tiny_artifact):
    port = free_port()
    server = launch(tiny_artifact, "--ollama-port", str(port))
    try:
        models = ollama.Client(host=f"http://localhost:{port}").list().models
        assert models[0].model == "tiny:latest"
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Ollama is running"
        # the same guard: a rebinding Host is refused on that port too
        assert httpx.get(f"http://127.0.0.1:{port}/api/tags",
                         headers={"Host": "evil.example"}).status_code == 421
    finally:
        log = server.stop()
    assert f"Ollama clients find it on http://localhost:{port}/" in log


def test_ollama_port_taken_is_skipped_with_one_line(tiny_artifact):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = launch(tiny_artifact, "--ollama-port", str(port))
        time.sleep(0.1)
        healthy = httpx.get(server.url + "/health").status_code
        log = server.stop()
    assert healthy == 200
    assert f"port {port} (Ollama's) is not free" in log and "find it on" not in log


def test_ollama_port_needs_the_api_key_too(tiny_artifact):
    port = free_port()
    server = launch(tiny_artifact, "--ollama-port", str(port), "--api-key", "k3y")
    try:
        url = f"http://127.0.0.1:{port}/api/tags"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer k3y"}).status_code == 200
        client = ollama.Client(host=f"http://127.0.0.1:{port}",
                               headers={"Authorization": "Bearer k3y"})
        assert client.list().models
    finally:
        server.stop()
