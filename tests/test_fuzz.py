"""Hostile and random input against a running artifact: never a 5xx, never a dead server."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from fuzzing import Poster, fuzzed_server, json_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("built")

ROUTES = ["/v1/chat/completions", "/v1/completions", "/completion", "/v1/embeddings",
          "/embedding", "/tokenize", "/detokenize"]


def openai_error(r: httpx.Response) -> None:
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def server(tiny_artifact):
    yield from fuzzed_server(tiny_artifact)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def post(http):
    return Poster(http, openai_error)


schema = json_values | st.just({"type": "object", "properties": {"x": {"type": "string"}},
                                 "required": ["x"]})
tool = st.fixed_dictionaries({"type": st.just("function") | json_values, "function": (
    st.fixed_dictionaries({"name": st.sampled_from(["f", "get_x", "a b", ""]) | json_values},
                          optional={"parameters": schema, "description": json_values})
    | json_values)})
tool_call = st.fixed_dictionaries({"function": st.fixed_dictionaries(
    {"name": st.sampled_from(["f", "get_x"]) | json_values},
    optional={"arguments": st.sampled_from(['{"x": "1"}', "{", ""]) | json_values})},
    optional={"id": json_values, "type": json_values})
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant",
                                                          "tool", "x"]),
                                 "content": json_values},
                                optional={"tool_calls": st.lists(tool_call, max_size=2)
                                          | json_values, "tool_call_id": json_values})
fields = st.fixed_dictionaries({}, optional={
    "messages": st.lists(message, max_size=3) | json_values,
    "prompt": st.text(max_size=60) | st.lists(st.integers(-5, 400), max_size=5) | json_values,
    "input": st.text(max_size=60) | st.lists(st.text(max_size=20), max_size=3) | json_values,
    "content": st.text(max_size=60) | json_values,
    "tokens": st.lists(st.integers(-10, 10**6), max_size=5) | json_values,
    "max_tokens": st.integers(-10, 20) | json_values, "n_predict": st.integers(-2, 20),
    "temperature": st.floats(-1, 3) | json_values, "top_p": json_values,
    "top_k": json_values, "seed": st.integers(-(2**65), 2**65) | json_values,
    "stop": json_values, "stream": st.booleans() | json_values, "n": st.integers(-1, 3),
    "response_format": json_values | st.just({"type": "json_object"}),
    "stream_options": json_values,
    "tools": st.lists(tool, max_size=2) | json_values,
    "tool_choice": st.sampled_from(["auto", "none", "required", "any"]) | json_values
    | st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": st.sampled_from(["f", "get_x"]) | json_values})}),
    "parallel_tool_calls": json_values,
})


@settings(max_examples=1100, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(route=st.sampled_from(ROUTES), body=fields)
def test_random_requests_never_get_a_5xx(post, route, body):
    if route in ("/v1/chat/completions", "/v1/completions", "/completion"):
        body = {k: v for k, v in body.items() if k not in ("n_predict", "max_tokens")} | {
            "max_tokens": 4, "n_predict": 4}  # keep the run bounded; the rest stays hostile
    post(route, json.dumps(body).encode())


@pytest.mark.parametrize("content, content_type", [
    (b"\xff\xfe\x00garbage", "application/json"),
    (b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}', "application/json"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}',
     "application/json"),
    (b'{"prompt": "x", "seed": 123456789012345678901234567890}', "application/json"),
    (b"messages=hi", "application/x-www-form-urlencoded"),
    (b"<xml/>", "text/xml"),
    (b"", "application/json"),
    (b"null", "application/json"),
])
@pytest.mark.parametrize("route", ROUTES)
def test_hand_written_hostile_bodies_get_4xx(post, route, content, content_type):
    r = post(route, content, content_type)
    assert r.status_code in (200, 400, 413, 422) or r.status_code < 300


def test_a_slow_client_does_not_block_others(server, http, post):
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 2}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
        started = time.monotonic()
        assert http.get("/health").status_code == 200
        post("/v1/chat/completions", body)
        assert time.monotonic() - started < 10
        slow.sendall(body[5:])
        assert b"200 OK" in slow.recv(4096)


def test_fuzz_volume(http, post):
    """Runs last in this module: the run above really sent its ~1,000 requests."""
    assert post.sent >= 1000
    assert http.get("/health").status_code == 200
