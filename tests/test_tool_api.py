"""Tool calling and the rest of OpenAI's request fields, in OpenAI's wire shapes: a fake engine
answers with scripted call events behind the real HTTP server, and the openai SDK and raw
SSE lines read them. What the real engine makes of a request is in test_tools_e2e.py."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fake import FakeServer
from tool_calls import ASK, TWO_CALLS, WEATHER, scripted_servers

from runtime.generation import CallArguments, CallStart, Finish, TokenLogprob, TopLogprob

TIME = {"type": "function", "function": {"name": "get_time"}}


@pytest.fixture
def serve_script():
    yield from scripted_servers()


def client(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def sse_deltas(server: FakeServer, body: dict) -> list[dict]:
    with httpx.stream("POST", server.url + "/v1/chat/completions",
                      json=body | {"stream": True}) as r:
        assert r.status_code == 200
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line)["choices"][0] for line in lines[:-1]]


def test_unary_answer_has_tool_calls_with_string_arguments_and_null_content(serve_script):
    server, engine = serve_script(*TWO_CALLS)
    answer = client(server).chat.completions.create(
        model="fake", messages=ASK, tools=[WEATHER, TIME])  # type: ignore[arg-type, list-item]
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("call_a1", "function", "get_weather", '{"city": "Paris"}'),
        ("call_b2", "function", "get_time", "{}")]
    request = engine.requests[0]
    assert [t.name for t in request.tools] == ["get_weather", "get_time"]
    assert request.tool_choice == "auto" and request.parallel_tool_calls


def test_streamed_calls_are_openai_deltas_id_and_name_once(serve_script):
    server, _ = serve_script(*TWO_CALLS)
    deltas = [c["delta"] for c in sse_deltas(server, {"messages": ASK, "tools": [WEATHER]})]
    assert deltas[0] == {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_a1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}
    assert deltas[1:3] == [{"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
                           {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}]
    assert deltas[3]["tool_calls"][0] | {"function": None} == {
        "index": 1, "id": "call_b2", "type": "function", "function": None}
    assert deltas[-1] == {}


def test_the_sdk_and_its_stream_helper_put_streamed_calls_back_together(serve_script):
    server, _ = serve_script(*TWO_CALLS)
    with client(server).chat.completions.stream(
            model="fake", messages=ASK, tools=[WEATHER, TIME]) as stream:  # type: ignore
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", '{"city": "Paris"}'), ("get_time", "{}")]
    assert final.choices[0].finish_reason == "tool_calls"


def test_text_then_a_call_streams_the_text_first_with_the_role(serve_script):
    server, _ = serve_script("Let me check.", CallStart(0, "call_x", "get_weather"),
                             CallArguments(0, '{"city": "Oslo"}'),
                             Finish("tool_calls", 5, 9, 0))
    chunks = sse_deltas(server, {"messages": ASK, "tools": [WEATHER]})
    assert chunks[0]["delta"] == {"role": "assistant", "content": "Let me check."}
    assert chunks[1]["delta"]["tool_calls"][0]["id"] == "call_x"
    assert chunks[-1]["finish_reason"] == "tool_calls"
    unary = client(server).chat.completions.create(model="fake", messages=ASK,  # type: ignore
                                                   tools=[WEATHER])  # type: ignore[list-item]
    assert unary.choices[0].message.content == "Let me check."


def test_plain_answer_with_tools_offered_streams_content(serve_script):
    server, _ = serve_script("Hello", " there", Finish("stop", 5, 2, 0))
    chunks = sse_deltas(server, {"messages": ASK, "tools": [WEATHER]})
    assert [c["delta"] for c in chunks] == [{"role": "assistant", "content": "Hello"},
                                            {"content": " there"}, {}]
    assert chunks[-1]["finish_reason"] == "stop"


def test_history_with_calls_and_results_reaches_the_engine(serve_script):
    server, engine = serve_script("18 C.", Finish("stop", 5, 2, 0))
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_a1", "content": "18 C"}]
    r = httpx.post(server.url + "/v1/chat/completions", json={
        "messages": history, "tools": [WEATHER], "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert r.status_code == 200, r.text
    request = engine.requests[0]
    assert request.tool_choice == "get_weather" and not request.parallel_tool_calls
    assistant, result = request.messages[-2:]  # type: ignore[index]
    assert assistant.role == "assistant" and assistant.tool_calls[0].name == "get_weather"
    assert assistant.tool_calls[0].arguments == '{"city": "Paris"}'
    assert (result.role, result.tool_call_id, result.content) == ("tool", "call_a1", "18 C")


@pytest.mark.parametrize("fields, message", [
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]},
     "tools[0].function.name"),
    ({"tools": [WEATHER, WEATHER]}, "used twice"),
    ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
     "no tool named 'x'"),
    ({"tool_choice": "required"}, "needs tools"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4 stop sequences"),
])
def test_bad_tool_fields_are_a_400_naming_them(serve_script, fields, message):
    server, _ = serve_script(Finish("stop", 1, 0, 0))
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": ASK} | fields)
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text


def test_unknown_and_ignored_openai_fields_are_accepted(serve_script):
    server, engine = serve_script("ok", Finish("stop", 1, 1, 0))
    r = httpx.post(server.url + "/v1/chat/completions", json={
        "messages": ASK, "user": "u-1", "metadata": {"k": "v"}, "store": False,
        "service_tier": "auto", "prompt_cache_key": "x", "reasoning_effort": "low",
        "stop": ["a", "b", "c", "d"], "frequency_penalty": 0, "presence_penalty": 0,
        "logit_bias": {}, "modalities": ["text"], "some_future_field": [1, 2]})
    assert r.status_code == 200, r.text
    assert engine.requests[0].stop == ("a", "b", "c", "d")


# -- logprobs

HI = TokenLogprob("Hi", b"Hi", -0.25, (TopLogprob("Hi", b"Hi", -0.25),
                                       TopLogprob("Hey", b"Hey", -1.5)))
ACCENT = TokenLogprob("\ufffd", b"\xc3", -0.5, ())  # half of "é": bytes say what it was


def test_chat_logprobs_in_openai_shape_unary_and_streamed(serve_script):
    finish = Finish("stop", 3, 2, 0, logprobs=(HI, ACCENT))
    server, engine = serve_script("Hi", "\ufffd", finish)
    answer = client(server).chat.completions.create(
        model="fake", messages=ASK, logprobs=True, top_logprobs=2)  # type: ignore[arg-type]
    assert engine.requests[0].logprobs == 2
    content = answer.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [(t.token, t.logprob, t.bytes) for t in content or []] == [
        ("Hi", -0.25, [72, 105]), ("\ufffd", -0.5, [0xC3])]
    assert [(t.token, t.logprob) for t in (content or [])[0].top_logprobs] == [
        ("Hi", -0.25), ("Hey", -1.5)]
    chunks = sse_deltas(server, {"messages": ASK, "logprobs": True})
    assert chunks[-1]["logprobs"]["content"][0]["token"] == "Hi"
    assert all(c["logprobs"] is None for c in chunks[:-1])


def test_legacy_completion_logprobs_are_parallel_lists(serve_script):
    server, engine = serve_script("Hi", "\ufffd", Finish("stop", 3, 2, 0, logprobs=(HI, ACCENT)))
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "x", "logprobs": 2})
    assert engine.requests[0].logprobs == 2
    assert r.json()["choices"][0]["logprobs"] == {
        "tokens": ["Hi", "\ufffd"], "token_logprobs": [-0.25, -0.5],
        "top_logprobs": [{"Hi": -0.25, "Hey": -1.5}, {}], "text_offset": [0, 2]}


def test_no_logprobs_unless_asked_and_top_logprobs_needs_them(serve_script):
    server, engine = serve_script("Hi", Finish("stop", 3, 1, 0))
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": ASK})
    assert r.json()["choices"][0]["logprobs"] is None and engine.requests[0].logprobs is None
    r = httpx.post(server.url + "/v1/chat/completions",
                   json={"messages": ASK, "top_logprobs": 3})
    assert r.status_code == 400 and "top_logprobs needs logprobs" in r.text
    r = httpx.post(server.url + "/v1/chat/completions",
                   json={"messages": ASK, "logprobs": True, "top_logprobs": 21})
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_logprobs"
