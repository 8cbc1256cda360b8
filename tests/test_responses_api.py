"""OpenAI's Responses API in its wire shapes: a fake engine answers with scripted events behind
the real HTTP server, and the openai SDK (create, stream) and raw SSE read them. What a real
model does with it, and the openai-agents SDK, are in test_responses_e2e.py."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from tool_calls import TWO_CALLS, scripted_servers

from runtime.generation import ChatMessage, Finish

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object",
                                                                 "properties": {}}}
TEXT = ("The sky ", "is clear.", Finish("stop", 12, 4, 3))


@pytest.fixture
def serve_script():
    yield from scripted_servers()


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def sse_events(server, body: dict) -> list[tuple[str, dict]]:
    with httpx.stream("POST", server.url + "/v1/responses", json=body | {"stream": True}) as r:
        assert r.status_code == 200, r.read()
        lines = list(r.iter_lines())
    names = [line[7:] for line in lines if line.startswith("event: ")]
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert names == [d["type"] for d in data]  # each event named by its type
    return list(zip(names, data, strict=True))


def test_text_answer_unary(serve_script):
    server, engine = serve_script(*TEXT)
    response = client(server).responses.create(model="fake", input="Sky?",
                                               instructions="Be brief.", max_output_tokens=30,
                                               temperature=0.2, top_p=0.5)
    assert response.output_text == "The sky is clear." and response.status == "completed"
    assert response.id.startswith("resp_") and response.output[0].id.startswith("msg_")
    assert response.usage and (response.usage.input_tokens, response.usage.output_tokens,
                               response.usage.input_tokens_details.cached_tokens) == (12, 4, 3)
    request = engine.requests[0]
    assert request.messages == (ChatMessage("system", "Be brief."), ChatMessage("user", "Sky?"))
    assert request.max_tokens == 30 and request.sampling.temperature == 0.2
    assert request.sampling.top_p == 0.5 and not request.tools


def test_text_stream_events_in_openai_order(serve_script):
    server, _ = serve_script(*TEXT)
    events = sse_events(server, {"input": "Sky?"})
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert events[0][1]["response"]["status"] == "in_progress"
    assert [d["delta"] for n, d in events if n.endswith(".delta")] == ["The sky ", "is clear."]
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["usage"]["output_tokens"] == 4
    assert done["output"][0]["content"][0]["text"] == "The sky is clear."


def test_sdk_stream_helper_gets_text_and_calls(serve_script):
    server, _ = serve_script("Let me look. ", *TWO_CALLS)
    with client(server).responses.stream(model="fake", input="Weather and time?",
                                         tools=[WEATHER, TIME]) as stream:  # type: ignore
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Let me look. "]
    kinds = [item.type for item in final.output]
    assert kinds == ["message", "function_call", "function_call"]
    calls = [(i.call_id, i.name, json.loads(i.arguments)) for i in final.output
             if i.type == "function_call"]
    assert calls == [("call_a1", "get_weather", {"city": "Paris"}), ("call_b2", "get_time", {})]


def test_calls_unary_and_their_streamed_argument_events(serve_script):
    server, engine = serve_script(*TWO_CALLS)
    response = client(server).responses.create(
        model="fake", input="Weather and time?", tools=[WEATHER, TIME],  # type: ignore
        tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False)
    assert [(i.type, i.name) for i in response.output] == [  # type: ignore[union-attr]
        ("function_call", "get_weather"), ("function_call", "get_time")]
    request = engine.requests[0]
    assert request.tool_choice == "get_weather" and not request.parallel_tool_calls
    assert [t.name for t in request.tools] == ["get_weather", "get_time"]
    events = sse_events(server, {"input": "x", "tools": [WEATHER]})
    args = [(d["output_index"], d["delta"]) for n, d in events
            if n == "response.function_call_arguments.delta"]
    assert args == [(0, '{"city": '), (0, '"Paris"}'), (1, "{}")]
    dones = [d for n, d in events if n == "response.function_call_arguments.done"]
    assert [(d["name"], d["arguments"]) for d in dones] == [
        ("get_weather", '{"city": "Paris"}'), ("get_time", "{}")]


def test_input_items_become_the_chat(serve_script):
    server, engine = serve_script(*TEXT)
    client(server).responses.create(model="fake", tools=[WEATHER], input=[  # type: ignore
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Paris"}', "id": "fc_1", "status": "completed"},
        {"type": "function_call_output", "call_id": "c1", "output": "18 C"},
        {"type": "message", "role": "assistant", "status": "completed", "id": "msg_1",
         "content": [{"type": "output_text", "text": "It is 18 C.", "annotations": []}]}])
    messages = engine.requests[0].messages or ()
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Use tools."), ("user", "Weather in Paris?"), ("assistant", ""),
        ("tool", "18 C"), ("assistant", "It is 18 C.")]
    assert [(c.id, c.name, c.arguments) for c in messages[2].tool_calls] == [
        ("c1", "get_weather", '{"city": "Paris"}')]
    assert (messages[3].tool_call_id, messages[3].name) == ("c1", "get_weather")


def test_json_schema_format_reaches_the_engine(serve_script):
    server, engine = serve_script('{"a": 1}', Finish("stop", 5, 3, 0))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    response = client(server).responses.create(model="fake", input="x", text={"format": {
        "type": "json_schema", "name": "thing", "schema": schema, "strict": True}})
    assert json.loads(response.output_text) == {"a": 1}
    assert engine.requests[0].json_schema == schema


def test_a_cut_answer_is_incomplete(serve_script):
    server, _ = serve_script("w0 w1", Finish("length", 3, 2, 0))
    response = client(server).responses.create(model="fake", input="x", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details and \
        response.incomplete_details.reason == "max_output_tokens"
    assert sse_events(server, {"input": "x"})[-1][0] == "response.incomplete"


@pytest.mark.parametrize("fields, message", [
    ({"previous_response_id": "resp_1"}, "previous_response_id: this server keeps no"),
    ({"conversation": "conv_1"}, "conversation: this server keeps no"),
    ({"background": True}, "background: not served"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]: only function tools are served"),
    ({"tools": [{"type": "function", "name": "a b"}]}, "tools[0].function.name"),
    ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]},
     "no tool named 'nope'"),
    ({"tool_choice": {"type": "web_search"}}, "tool_choice: expected"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0]: only text parts are served"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]: this server keeps no"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id: expected a str"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role: expected user"),
    ({"input": []}, "input: no messages"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"text": {"format": {"type": "json_schema", "schema": 3}}}, "text.format"),
])
def test_what_is_not_served_is_a_clear_400(serve_script, fields, message):
    server, _ = serve_script(*TEXT)
    r = httpx.post(server.url + "/v1/responses", json={"input": "hi"} | fields)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_a_stored_response_is_not_found(serve_script):
    server, _ = serve_script(*TEXT)
    r = httpx.get(server.url + "/v1/responses/resp_1")
    assert r.status_code == 404 and "keeps no responses" in r.json()["error"]["message"]
