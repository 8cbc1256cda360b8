"""Fill-in-the-middle: the prompt laid out in the model's FIM tokens (runtime/llama/infill.py),
and the three ways editors ask for it — Ollama's /api/generate with `suffix`, llama.cpp's
/infill and OpenAI's /v1/completions with `suffix` — against real artifacts: Qwen2.5-Coder,
which has FIM tokens, and the tiny model, which has none (a 400 naming the reason)."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from runtime.generation import Infill
from runtime.llama.infill import FimTokens, infill_prompt

FIM = FimTokens(pre=-1, suf=-2, mid=-3, rep=-4, sep=-5)


def chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_prompt_is_prefix_suffix_middle_in_fim_tokens():
    tokens = infill_prompt(Infill("ab", "cd"), FIM, chars, None, 100)
    assert tokens == [-1, *chars("ab"), -2, *chars("cd"), -3]
    with_bos = infill_prompt(Infill("ab", "cd"), FimTokens(-1, -2, -3, None, None), chars, 7,
                             100)
    assert with_bos[0] == 7 and with_bos[1:] == tokens


def test_other_files_come_first_in_the_repository_layout():
    tokens = infill_prompt(Infill("x", "y", (("a.py", "A"),)), FIM, chars, None, 100)
    assert tokens == [-4, *chars("myproject\n"), -5, *chars("a.py\n"), *chars("A"),
                      -5, *chars("filename\n"), -1, *chars("x"), -2, *chars("y"), -3]


def test_a_long_prompt_keeps_the_prefix_end_and_suffix_start_three_to_one():
    tokens = infill_prompt(Infill("p" * 100, "s" * 100, (("f", "e" * 50),)), FIM, chars,
                           None, 43)
    assert len(tokens) == 43 and tokens[0] == -1  # the other files went first
    assert tokens.count(ord("p")) == 30 and tokens.count(ord("s")) == 10


def test_no_fim_tokens_is_a_request_error():
    from runtime.errors import RequestError

    with pytest.raises(RequestError, match="no fill-in-the-middle tokens"):
        infill_prompt(Infill("a", "b"), None, chars, None, 100)


# ---- the real models

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\n\nprint(add(2, 3))\n"


@pytest.mark.slow
def test_ollama_generate_with_suffix_fills_the_middle(instruct_ollama):
    client = ollama.Client(host=instruct_ollama.url)
    name = client.list().models[0].model
    answer = client.generate(model=name, prompt=PREFIX, suffix=SUFFIX,
                             options={"temperature": 0, "num_predict": 16})
    assert "a + b" in answer.response and answer.done
    streamed = "".join(part.response for part in client.generate(
        model=name, prompt=PREFIX, suffix=SUFFIX, stream=True,
        options={"temperature": 0, "num_predict": 16}))
    assert streamed == answer.response
    shown = client.show(name)
    assert "insert" in shown.capabilities and ".Suffix" in shown.template
    assert "completion" in shown.capabilities and "tools" in shown.capabilities


@pytest.mark.slow
def test_llamacpp_infill_and_openai_suffix_agree(instruct_ollama):
    infill = httpx.post(instruct_ollama.url + "/infill", timeout=300, json={
        "input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 16, "temperature": 0,
        "input_extra": [{"filename": "util.py", "text": "def sub(a, b):\n    return a - b\n"}]})
    assert infill.status_code == 200 and "a + b" in infill.json()["content"]
    client = openai.OpenAI(base_url=instruct_ollama.url + "/v1", api_key="none")
    completion = client.completions.create(model="qwen", prompt=PREFIX, suffix=SUFFIX,
                                           max_tokens=16, temperature=0)
    assert "a + b" in completion.choices[0].text


@pytest.mark.slow
def test_a_model_without_fim_tokens_refuses_suffix_with_400(tiny_artifact, serve):
    server = serve(tiny_artifact)
    for route, body in [
            ("/api/generate", {"prompt": "a", "suffix": "b", "stream": False}),
            ("/infill", {"input_prefix": "a", "input_suffix": "b"}),
            ("/v1/completions", {"prompt": "a", "suffix": "b"})]:
        r = httpx.post(server.url + route, json=body)
        assert r.status_code == 400, (route, r.text)
        assert "no fill-in-the-middle tokens" in r.text
    shown = httpx.post(server.url + "/api/show", json={}).json()
    assert "insert" not in shown["capabilities"] and ".Suffix" not in shown["template"]
    r = httpx.post(server.url + "/v1/completions", json={"prompt": [1, 2], "suffix": "b"})
    assert r.status_code == 400 and "token ids" in r.json()["error"]["message"]
