"""Hostile and random input on the Ollama routes of a running artifact: never a 5xx, every error
in Ollama's shape (`{"error": "text"}`), every stream line a JSON object."""

from __future__ import annotations

import json

import httpx
import pytest
from fuzzing import Poster, fuzzed_server, json_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("built")

ROUTES = ["/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show"]


def ollama_error(r: httpx.Response) -> None:
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), r.text


@pytest.fixture(scope="module")
def server(tiny_artifact):
    yield from fuzzed_server(tiny_artifact, "--ollama-port", "0")


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def ndjson_stream(r: httpx.Response) -> None:
    if r.headers["content-type"] == "application/x-ndjson":
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert all(isinstance(line, dict) for line in lines)
        assert lines[-1].get("done") is True or set(lines[-1]) == {"error"}, lines[-1]


@pytest.fixture(scope="module")
def post(http):
    return Poster(http, ollama_error, ndjson_stream)


options = st.fixed_dictionaries({}, optional={
    key: json_values for key in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                                 "repeat_last_n", "seed", "stop", "num_ctx", "mirostat",
                                 "num_thread", "x")}) | json_values
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant",
                                                          "tool", "x"]),
                                 "content": st.text(max_size=30) | json_values},
                                optional={"images": json_values, "tool_calls": json_values})
fields = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["tiny", "tiny:latest", "TINY", "", "other:7b"]) | json_values,
    "messages": st.lists(message, max_size=3) | json_values,
    "prompt": st.text(max_size=60) | json_values,
    "input": st.text(max_size=40) | st.lists(st.text(max_size=20), max_size=3) | json_values,
    "system": st.text(max_size=20) | json_values, "raw": st.booleans() | json_values,
    "suffix": json_values, "template": json_values, "context": json_values,
    "images": json_values, "format": st.sampled_from(["", "json", {"type": "object"}])
    | json_values, "options": options, "stream": st.booleans() | json_values,
    "keep_alive": st.sampled_from([0, "5m", -1]) | json_values, "think": json_values,
    "dimensions": st.integers(-2, 2000) | json_values, "truncate": json_values,
    "name": json_values,
})


def bounded(body: dict) -> dict:
    """The run kept short (every generation at most 4 tokens); the rest stays hostile."""
    if isinstance(body.get("options"), dict):
        body["options"] = body["options"] | {"num_predict": 4}
    return body


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(route=st.sampled_from(ROUTES), body=fields)
def test_random_requests_never_get_a_5xx(post, route, body):
    post(route, json.dumps(bounded(body)).encode())


@pytest.mark.parametrize("content, content_type", [
    (b"\xff\xfe\x00garbage", "application/json"),
    (b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}', "application/json"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
    (b'{"prompt": "x", "options": {"num_predict": 1e999}}', "application/json"),
    (b'{"prompt": "x", "options": {"seed": 123456789012345678901234567890}}',
     "application/json"),
    (b'{"prompt": "x", "format": {"type": "nonsense"}, "options": {"num_predict": 2}}',
     "application/json"),
    (b'{"prompt": "' + b"word " * 5000 + b'", "options": {"num_predict": 2}}',
     "application/json"),
    (b"prompt=hi", "application/x-www-form-urlencoded"),
    (b"", "application/json"),
    (b"null", "application/json"),
])
@pytest.mark.parametrize("route", ROUTES)
def test_hand_written_hostile_bodies_get_4xx(post, route, content, content_type):
    post(route, content, content_type)


@pytest.mark.parametrize("method, path", [("GET", "/api/chat"), ("DELETE", "/api/delete"),
                                          ("POST", "/api/pull"), ("GET", "/api/"),
                                          ("PUT", "/api/tags"), ("POST", "/api/version")])
def test_routes_ollama_has_and_we_do_not_answer_in_its_shape(http, method, path):
    r = http.request(method, path, json={"model": "tiny"})
    assert r.status_code in (404, 405) and isinstance(r.json()["error"], str)


def test_fuzz_volume(http, post):
    """Runs last in this module: the run above really sent its ~600 requests."""
    assert post.sent >= 600
    assert http.get("/health").status_code == 200
