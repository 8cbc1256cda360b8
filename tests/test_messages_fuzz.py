"""Random and hostile input against the routes of issue 26 on a running artifact: Anthropic's
/v1/messages and /v1/messages/count_tokens, and fill-in-the-middle (/infill, /v1/completions and
/api/generate with a suffix). Never a 5xx, every error in its dialect's shape."""

from __future__ import annotations

import json

import httpx
import pytest
from fuzzing import Poster, fuzzed_server, json_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("built")

MESSAGES = ["/v1/messages", "/v1/messages/count_tokens", "/v1/messages?beta=true"]
FIM = ["/infill", "/v1/completions", "/api/generate"]


def error_shape(r: httpx.Response) -> None:
    """Anthropic's on /v1/messages*, Ollama's on /api/*, OpenAI's elsewhere."""
    body = r.json()
    path = r.request.url.path
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    elif path.startswith("/api/"):
        assert isinstance(body["error"], str)
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def server(tiny_artifact):
    yield from fuzzed_server(tiny_artifact)


@pytest.fixture(scope="module")
def post(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield Poster(http, error_shape)


block = st.fixed_dictionaries({"type": st.sampled_from(
    ["text", "image", "tool_use", "tool_result", "thinking", "document", "x"]) | json_values},
    optional={"text": st.text(max_size=20) | json_values, "id": json_values,
              "name": st.sampled_from(["f", "get_x"]) | json_values,
              "input": json_values | st.just({"x": "1"}),
              "tool_use_id": json_values | st.just("t1"),
              "content": json_values | st.lists(st.fixed_dictionaries(
                  {"type": st.just("text"), "text": st.text(max_size=10)}), max_size=2),
              "is_error": json_values})
message = st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "system", "x"]) | json_values,
    "content": st.text(max_size=30) | st.lists(block, max_size=3) | json_values})
tool = st.fixed_dictionaries({"name": st.sampled_from(["f", "get_x", "a b", ""]) | json_values},
                             optional={"description": json_values, "type": json_values,
                                       "input_schema": json_values | st.just(
                                           {"type": "object", "properties": {
                                               "x": {"type": "string"}}})})
anthropic_fields = st.fixed_dictionaries({}, optional={
    "messages": st.lists(message, max_size=3) | json_values,
    "system": st.text(max_size=20) | st.lists(block, max_size=2) | json_values,
    "max_tokens": st.integers(-2, 4) | json_values,
    "stop_sequences": st.lists(st.text(max_size=4), max_size=3) | json_values,
    "temperature": st.floats(-1, 3) | json_values, "top_p": json_values, "top_k": json_values,
    "stream": st.booleans() | json_values,
    "tools": st.lists(tool, max_size=2) | json_values,
    "tool_choice": json_values | st.fixed_dictionaries(
        {"type": st.sampled_from(["auto", "any", "tool", "none"]) | json_values},
        optional={"name": st.sampled_from(["f", "get_x"]) | json_values,
                  "disable_parallel_tool_use": json_values}),
    "thinking": json_values, "metadata": json_values})
fim_fields = st.fixed_dictionaries({}, optional={
    "prompt": st.text(max_size=30) | st.lists(st.integers(-5, 400), max_size=3) | json_values,
    "suffix": st.text(max_size=30) | json_values,
    "input_prefix": st.text(max_size=30) | json_values,
    "input_suffix": st.text(max_size=30) | json_values,
    "input_extra": st.lists(st.fixed_dictionaries({}, optional={
        "filename": json_values, "text": json_values}), max_size=2) | json_values,
    "raw": json_values, "stream": st.booleans() | json_values, "images": json_values,
    "keep_alive": json_values, "think": json_values, "options": json_values})


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(route=st.sampled_from(MESSAGES), body=anthropic_fields)
def test_random_messages_requests_never_get_a_5xx(post, route, body):
    if isinstance(body.get("max_tokens"), int) is False or body.get("max_tokens", 0) > 4:
        body["max_tokens"] = 4  # bounded runs; the rest stays hostile
    post(route, json.dumps(body).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(route=st.sampled_from(FIM), body=fim_fields)
def test_random_fill_in_the_middle_requests_never_get_a_5xx(post, route, body):
    body |= {"max_tokens": 4, "n_predict": 4, "options": {"num_predict": 4}}
    post(route, json.dumps(body).encode())


@pytest.mark.parametrize("content", [
    b"\xff\xfe\x00garbage", b"[" * 100_000 + b"]" * 100_000, b"", b"null",
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}',
    b'{"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}'])
@pytest.mark.parametrize("route", MESSAGES)
def test_hand_written_hostile_bodies_get_4xx_in_anthropics_shape(post, route, content):
    r = post(route, content)
    assert r.status_code in (400, 413, 422)
