"""A client that goes away stops its request: before its answer starts (queued or reading its
prompt) and during a non-streamed answer. The web layer sets the request's cancel signal; the
decoder's side of it is tested against llama.cpp in test_decoder.py."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import free_port
from fake import FakeEngine, FakeServer

ROUTES = [("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                    "max_tokens": 100}),
          ("/api/chat", {"messages": [{"role": "user", "content": "hi"}], "stream": False,
                         "options": {"num_predict": 100}}),
          ("/completion", {"prompt": "hi", "n_predict": 100}),
          ("/v1/responses", {"input": "hi", "max_output_tokens": 100}),
          ("/v1/messages", {"messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 100})]


def leave_after(url: str, body: dict, seconds: float) -> None:
    with pytest.raises(httpx.TimeoutException):
        httpx.post(url, json=body, timeout=seconds)


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_a_whole_answer_stops_when_its_client_leaves(path, body):
    engine = FakeEngine(delay=0.02)  # 100 tokens: 2 s
    with FakeServer(engine, free_port()) as server:
        leave_after(server.url + path, body, 0.3)
        time.sleep(0.3)
        produced = engine.produced
        time.sleep(0.5)
        assert engine.produced == produced < 50


def test_a_queued_stream_whose_client_left_never_runs():
    engine = FakeEngine(delay=0.02)
    with FakeServer(engine, free_port()) as server:
        first = threading.Thread(target=httpx.post, args=(server.url + "/v1/completions",),
                                 kwargs={"json": {"prompt": "a", "max_tokens": 40},
                                         "timeout": 10})
        first.start()
        time.sleep(0.2)  # the first holds the only model thread
        with pytest.raises(httpx.TimeoutException), httpx.stream(
                "POST", server.url + "/v1/completions", timeout=0.2,
                json={"prompt": "b", "max_tokens": 40, "stream": True}) as r:
            r.read()
        first.join()
        time.sleep(0.3)
        assert [r.prompt for r in engine.requests] == ["a"]

