"""Hostile and random input on POST /v1/responses of a running artifact: never a 5xx, every error
in OpenAI's shape, every stream a run of typed events that ends in the response's last event."""

from __future__ import annotations

import json

import httpx
import pytest
from fuzzing import Poster, fuzzed_server, json_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("built")

LAST = {"response.completed", "response.incomplete", "error"}


def openai_error(r: httpx.Response) -> None:
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}, r.text


def typed_events(r: httpx.Response) -> None:
    if not r.headers["content-type"].startswith("text/event-stream"):
        assert r.json()["object"] == "response"
        return
    data = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert data[0]["type"] == "response.created" and data[-1]["type"] in LAST, data[-1]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))


@pytest.fixture(scope="module")
def server(tiny_artifact):
    yield from fuzzed_server(tiny_artifact)


@pytest.fixture(scope="module")
def post(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield Poster(client, openai_error, typed_events)


part = st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text", "refusal",
                                                       "input_image", "x"]) | json_values},
                             optional={"text": st.text(max_size=20) | json_values,
                                       "refusal": json_values})
item = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer", "assistant",
                                                    "tool"]) | json_values},
                          optional={"type": st.just("message") | json_values,
                                    "content": st.text(max_size=30) | st.lists(part, max_size=2)
                                    | json_values}),
    st.fixed_dictionaries({"type": st.just("function_call")}, optional={
        "call_id": st.sampled_from(["c1", "c2"]) | json_values,
        "name": st.sampled_from(["f", "g"]) | json_values,
        "arguments": st.sampled_from(['{"x": "1"}', "{", ""]) | json_values}),
    st.fixed_dictionaries({"type": st.just("function_call_output")}, optional={
        "call_id": st.sampled_from(["c1", "c2"]) | json_values,
        "output": st.text(max_size=20) | st.lists(part, max_size=2) | json_values}),
    st.fixed_dictionaries({"type": st.sampled_from(["reasoning", "item_reference", "x"])}),
    json_values)
tool = st.fixed_dictionaries({"type": st.sampled_from(["function", "web_search"]) | json_values},
                             optional={"name": st.sampled_from(["f", "g", "a b"]) | json_values,
                                       "parameters": json_values | st.just(
                                           {"type": "object", "properties": {
                                               "x": {"type": "string"}}}),
                                       "strict": json_values})
fields = st.fixed_dictionaries({"input": st.text(max_size=40) | st.lists(item, max_size=4)
                                | json_values}, optional={
    "instructions": st.text(max_size=20) | json_values,
    "tools": st.lists(tool, max_size=2) | json_values,
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | json_values
    | st.fixed_dictionaries({"type": st.just("function"),
                             "name": st.sampled_from(["f", "g"]) | json_values}),
    "text": st.fixed_dictionaries({"format": st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema"]) | json_values},
        optional={"schema": json_values, "name": json_values})}) | json_values,
    "temperature": st.floats(-1, 3) | json_values, "top_p": json_values,
    "parallel_tool_calls": json_values, "stream": st.booleans() | json_values,
    "previous_response_id": json_values, "store": json_values, "metadata": json_values,
    "background": json_values, "conversation": json_values, "include": json_values,
})


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(body=fields)
def test_random_responses_requests_never_get_a_5xx(post, body):
    body["max_output_tokens"] = 4  # bounded; the rest stays hostile
    post("/v1/responses", json.dumps(body).encode())


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[]", b"null", b'{"input": 1e999}',
                                     b'{"input": "hi", "max_output_tokens": 1e999}', b""])
def test_hand_written_hostile_bodies_get_a_400(post, content):
    assert post("/v1/responses", content).status_code == 400
