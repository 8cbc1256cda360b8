"""Anthropic's Messages API (runtime/web/anthropic.py) with the unmodified `anthropic` SDK: a
fake engine answers with scripted events behind the real HTTP server, so shapes, events and
errors are checked exactly; the real Qwen2.5-Coder model answers at the bottom."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest
from conftest import free_port
from fake import FakeEngine, FakeServer
from pydantic import BaseModel
from tool_calls import TWO_CALLS, scripted_servers

from runtime.generation import CallArguments, CallStart, Finish

WEATHER = {"name": "get_weather", "description": "Current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
ONE_CALL = [CallStart(0, "call_a1", "get_weather"), CallArguments(0, '{"city": '),
            CallArguments(0, '"Paris"}'), Finish("tool_calls", 20, 8, 0)]


@pytest.fixture
def scripted():
    yield from scripted_servers()


def client(server, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=kwargs.pop("api_key", "none"),
                               max_retries=0, **kwargs)


def test_unary_text_answer_with_usage_and_end_turn(scripted):
    server, engine = scripted("Hello", " there.", Finish("stop", 12, 2, 5))
    answer = client(server).messages.create(
        model="fake", max_tokens=50, system="Be brief.", messages=ASK,
        extra_body={"temperature": 0.2, "top_k": 7})  # this SDK has no sampling arguments
    assert answer.type == "message" and answer.role == "assistant" and answer.model == "fake"
    assert answer.id.startswith("msg_") and answer.content[0].type == "text"
    assert answer.content[0].text == "Hello there." and answer.stop_reason == "end_turn"
    assert (answer.usage.input_tokens, answer.usage.output_tokens,
            answer.usage.cache_read_input_tokens) == (7, 2, 5)
    request = engine.requests[-1]
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be brief."), ("user", "Weather in Paris?")]
    assert request.max_tokens == 50 and request.sampling.temperature == 0.2
    assert request.sampling.top_k == 7 and not request.tools


def test_streamed_text_comes_as_anthropics_typed_events(scripted):
    server, _ = scripted("Hel", "lo", Finish("length", 9, 2, 0))
    with httpx.stream("POST", server.url + "/v1/messages?beta=true", json={
            "model": "fake", "max_tokens": 2, "messages": ASK, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    names = [line[7:] for line in lines if line.startswith("event: ")]
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert names == [d["type"] for d in data] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert data[2]["content_block"] == {"type": "text", "text": ""}
    assert data[3]["delta"] == {"type": "text_delta", "text": "Hel"}
    assert data[6]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert data[6]["usage"]["output_tokens"] == 2 and data[6]["usage"]["input_tokens"] == 9


def test_sdk_stream_accumulates_text_and_tool_use(scripted):
    server, _ = scripted("Let me check.", *ONE_CALL)
    with client(server).messages.stream(model="fake", max_tokens=64, messages=ASK,
                                        tools=[WEATHER]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Let me check." and final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    call = final.content[1]
    assert (call.id, call.name, call.input) == ("call_a1", "get_weather", {"city": "Paris"})


def test_unary_calls_are_tool_use_blocks_with_object_input(scripted):
    server, engine = scripted(*TWO_CALLS)
    answer = client(server).messages.create(model="fake", max_tokens=64, messages=ASK,
                                            tools=[WEATHER, TIME])
    assert answer.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in answer.content] == [
        ("tool_use", "get_weather", {"city": "Paris"}), ("tool_use", "get_time", {})]
    request = engine.requests[-1]
    assert [t.name for t in request.tools] == ["get_weather", "get_time"]
    assert request.tools[0].parameters == WEATHER["input_schema"]
    assert request.tool_choice == "auto" and request.parallel_tool_calls


@pytest.mark.parametrize(("choice", "expected", "parallel"), [
    ({"type": "auto"}, "auto", True), ({"type": "any"}, "required", True),
    ({"type": "tool", "name": "get_time"}, "get_time", True),
    ({"type": "none"}, "none", True),
    ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False)])
def test_tool_choice_maps_onto_the_request(scripted, choice, expected, parallel):
    server, engine = scripted("ok", Finish("stop", 5, 1, 0))
    client(server).messages.create(model="fake", max_tokens=8, messages=ASK,
                                   tools=[WEATHER, TIME], tool_choice=choice)
    request = engine.requests[-1]
    assert (request.tool_choice, request.parallel_tool_calls) == (expected, parallel)


def test_history_of_tool_use_and_results_reaches_the_template(scripted):
    server, engine = scripted("It is sunny.", Finish("stop", 30, 3, 0))
    history = ASK + [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "text", "text": "sunny, 21 C"}]},
            {"type": "text", "text": "And so?"}]}]
    answer = client(server).messages.create(model="fake", max_tokens=16, messages=history,
                                            tools=[WEATHER])
    assert answer.content[0].text == "It is sunny."
    messages = engine.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "user"]
    call = messages[1].tool_calls[0]
    assert (messages[1].content, call.id, call.name, json.loads(call.arguments)) == (
        "Checking.", "toolu_1", "get_weather", {"city": "Paris"})
    assert (messages[2].content, messages[2].tool_call_id, messages[2].name) == (
        "sunny, 21 C", "toolu_1", "get_weather")
    assert messages[3].content == "And so?"


def test_a_callers_stop_sequence_is_reported_a_templates_is_not(scripted):
    server, engine = scripted("A, B", Finish("stop", 5, 3, 0, stop_sequence="C"))
    answer = client(server).messages.create(model="fake", max_tokens=8, messages=ASK,
                                            stop_sequences=["C", "D"])
    assert (answer.stop_reason, answer.stop_sequence) == ("stop_sequence", "C")
    assert engine.requests[-1].stop == ("C", "D")
    server, _ = scripted("A", Finish("stop", 5, 1, 0, stop_sequence="<end_of_turn>"))
    answer = client(server).messages.create(model="fake", max_tokens=8, messages=ASK)
    assert (answer.stop_reason, answer.stop_sequence) == ("end_turn", None)


def test_count_tokens_counts_the_rendered_prompt(scripted):
    server, engine = scripted("unused", Finish("stop", 1, 1, 0))
    count = client(server).messages.count_tokens(model="fake", messages=ASK, system="Hi.")
    # the fake counts each message's words plus four: "Hi." and "Weather in Paris?"
    assert count.input_tokens == (1 + 4) + (3 + 4) and not engine.requests


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
     "messages[0].content[0]: this model reads text only"),
    ({"messages": ASK, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "not served"),
    ({"messages": ASK, "tool_choice": {"type": "any"}}, "needs tools"),
    ({"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
     "no tool named 'nope'"),
    ({"messages": ASK, "max_tokens": 0}, "max_tokens")])
def test_bad_requests_are_400_in_anthropics_shape(scripted, body, message):
    server, _ = scripted("unused", Finish("stop", 1, 1, 0))
    r = httpx.post(server.url + "/v1/messages", json={"model": "fake", **body})
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client(server).messages.create(model="fake", **({"max_tokens": 8} | body))


def test_x_api_key_and_bearer_both_pass_the_key_check():
    with FakeServer(FakeEngine(delay=0), free_port(), api_key="s3cret") as server:
        good = client(server, api_key="s3cret").messages.create(
            model="fake", max_tokens=2, messages=ASK)
        assert good.content[0].text == "w0 w1 "
        bearer = anthropic.Anthropic(base_url=server.url, auth_token="s3cret", max_retries=0)
        assert bearer.messages.count_tokens(model="fake", messages=ASK).input_tokens == 7
        with pytest.raises(anthropic.AuthenticationError) as refused:
            client(server, api_key="wrong").messages.create(model="fake", max_tokens=2,
                                                            messages=ASK)
        assert refused.value.body["error"]["type"] == "authentication_error"


def test_beta_query_string_and_sdk_beta_namespace_work(scripted):
    server, _ = scripted("Hi", Finish("stop", 3, 1, 0))
    answer = client(server).beta.messages.create(model="fake", max_tokens=4, messages=ASK)
    assert answer.content[0].text == "Hi"


# ---- the real model

COLD = {"temperature": 0}
ANSWER_FROM_RESULT = "When a tool result is given, answer the user's question from it in one " \
    "sentence."


@pytest.fixture(scope="module")
def claude(instruct_ollama) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=instruct_ollama.url, api_key="none", max_retries=0,
                               timeout=300)


@pytest.mark.slow
def test_instruct_model_answers_and_streams_the_same(claude):
    question = [{"role": "user", "content": "What is the capital of France? One word."}]
    whole = claude.messages.create(model="qwen", max_tokens=16, extra_body=COLD,
                                   messages=question)
    assert "Paris" in whole.content[0].text and whole.stop_reason == "end_turn"
    with claude.messages.stream(model="qwen", max_tokens=16, extra_body=COLD,
                                messages=question) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text and final.usage.output_tokens == \
        whole.usage.output_tokens
    counted = claude.messages.count_tokens(model="qwen", messages=question)
    assert counted.input_tokens == whole.usage.input_tokens + \
        whole.usage.cache_read_input_tokens


class City(BaseModel):
    name: str
    country: str


@pytest.mark.slow
def test_instruct_model_answers_in_a_structured_output(claude):
    parsed = claude.messages.parse(model="qwen", max_tokens=64, extra_body=COLD,
                                   output_format=City, messages=[
                                       {"role": "user", "content": "The capital of France."}])
    assert parsed.parsed_output == City(name="Paris", country="France")


@pytest.mark.slow
def test_instruct_model_calls_a_tool_and_uses_its_result(claude):
    history = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    first = claude.messages.create(model="qwen", max_tokens=128, extra_body=COLD,
                                   messages=history, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and "paris" in call.input["city"].lower()
    history += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                              "content": "sunny, 21 degrees Celsius"}]}]
    # a 0.5B model tends to call again after a result (as test_ollama_tools.py says): "none"
    # and a system line ask for the answer itself
    second = claude.messages.create(model="qwen", max_tokens=128, extra_body=COLD,
                                    messages=history, tools=[WEATHER],
                                    tool_choice={"type": "none"}, system=ANSWER_FROM_RESULT)
    assert second.stop_reason == "end_turn"
    assert "21" in second.content[0].text or "sunny" in second.content[0].text.lower()
