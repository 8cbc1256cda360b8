"""Options that were parsed and then dropped (#23): each now reaches the engine, or a value
out of range is a 400. Penalties in llama.cpp's sampler: test_decoder.py."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import free_port
from fake import FakeEngine, FakeServer

PENALTIES = [("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                       "max_tokens": 2, "presence_penalty": 0.5,
                                       "frequency_penalty": 1.5}),
             ("/v1/completions", {"prompt": "hi", "max_tokens": 2, "presence_penalty": 0.5,
                                  "frequency_penalty": 1.5}),
             ("/completion", {"prompt": "hi", "n_predict": 2, "presence_penalty": 0.5,
                              "frequency_penalty": 1.5}),
             ("/api/chat", {"messages": [{"role": "user", "content": "hi"}], "stream": False,
                            "options": {"num_predict": 2, "presence_penalty": 0.5,
                                        "frequency_penalty": 1.5}}),
             ("/api/generate", {"prompt": "hi", "stream": False, "options": {
                 "num_predict": 2, "presence_penalty": 0.5, "frequency_penalty": 1.5}})]


@pytest.mark.parametrize(("path", "body"), PENALTIES)
def test_presence_and_frequency_penalties_reach_the_sampler(path, body):
    engine = FakeEngine(delay=0)
    with FakeServer(engine, free_port()) as server:
        assert httpx.post(server.url + path, json=body, timeout=10).status_code == 200
        sampling = engine.requests[-1].sampling
        assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.5, 1.5)
        bad = json.loads(json.dumps(body).replace("1.5", "2.5"))  # past OpenAI's bounds
        assert httpx.post(server.url + path, json=bad, timeout=10).status_code == 400


@pytest.mark.parametrize("truncate", [True, False])
def test_ollama_embed_truncate_reaches_the_embedder(truncate):
    from fake import FakeKnowledge

    knowledge = FakeKnowledge([])
    with FakeServer(FakeEngine(delay=0, knowledge=knowledge), free_port()) as server:
        r = httpx.post(server.url + "/api/embed", json={"input": "some text",
                                                       "truncate": truncate}, timeout=10)
        assert r.status_code == 200, r.text
        r = httpx.post(server.url + "/api/embed", json={"input": "more"}, timeout=10)
        assert knowledge.truncated == [truncate, True]  # Ollama's default: true
