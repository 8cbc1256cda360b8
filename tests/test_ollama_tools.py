"""Tool calling in Ollama's shapes: whole calls with object arguments, never fragments; results
sent back without ids pair with calls by order. A fake engine answers with scripted call events;
the real Qwen2.5-Coder instruct model is checked end to end at the bottom."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest
from langchain_ollama import ChatOllama
from tool_calls import ASK, TWO_CALLS, WEATHER, scripted_servers

from runtime.generation import Finish

TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now",
                                         "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
def scripted():
    yield from scripted_servers()


def test_unary_answer_has_whole_calls_with_object_arguments(scripted):
    server, engine = scripted(*TWO_CALLS)
    reply = ollama.Client(host=server.url).chat(model="fake", messages=ASK,
                                                tools=[WEATHER, TIME], stream=False)
    calls = [(c.function.name, dict(c.function.arguments)) for c in reply.message.tool_calls]
    assert calls == [("get_weather", {"city": "Paris"}), ("get_time", {})]
    assert reply.message.content == "" and reply.done_reason == "stop"
    assert [t.name for t in engine.requests[-1].tools] == ["get_weather", "get_time"]
    assert engine.requests[-1].tool_choice == "auto"


def test_streamed_calls_come_whole_in_one_chunk(scripted):
    server, _ = scripted("Let me check. ", *TWO_CALLS)
    with httpx.stream("POST", server.url + "/api/chat",
                      json={"model": "fake", "messages": ASK, "tools": [WEATHER, TIME]}) as r:
        chunks = [json.loads(line) for line in r.iter_lines()]
    assert chunks[0]["message"] == {"role": "assistant", "content": "Let me check. "}
    with_calls = [c for c in chunks if c["message"].get("tool_calls")]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    assert with_calls[0]["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"index": 1, "name": "get_time", "arguments": {}}}]
    assert chunks[-1]["done"] is True and chunks[-1]["done_reason"] == "stop"
    assert all(isinstance(c["message"]["content"], str) for c in chunks)


def test_history_with_calls_and_results_reaches_the_template(scripted):
    server, engine = scripted("It is sunny.", Finish("stop", 30, 3, 0))
    history = ASK + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"}]
    reply = ollama.Client(host=server.url).chat(model="fake", messages=history,
                                                tools=[WEATHER])
    assert reply.message.content == "It is sunny."
    assistant, result = engine.requests[-1].messages[-2:]
    (call,) = assistant.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert result.role == "tool" and result.content == "sunny, 21 C"
    assert result.name == "get_weather" and result.tool_call_id is None  # paired by order


def test_bad_tools_are_400_naming_them(scripted):
    server, _ = scripted(*TWO_CALLS)
    r = httpx.post(server.url + "/api/chat", json={"messages": ASK, "tools": [{"type": "x"}]})
    assert r.status_code == 400 and r.json()["error"].startswith("tools[0]")
    shown = httpx.post(server.url + "/api/show", json={"model": "fake"}).json()
    assert "tools" in shown["capabilities"]


def test_chat_ollama_bind_tools_gets_the_calls(scripted):
    server, _ = scripted(*TWO_CALLS)
    chat = ChatOllama(model="fake", base_url=server.url).bind_tools([WEATHER, TIME])
    reply = chat.invoke("Weather in Paris and the time?")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {})]


@pytest.mark.slow
def test_instruct_model_calls_a_tool_and_uses_its_result(instruct_ollama):
    client = ollama.Client(host=instruct_ollama.url)
    name = client.list().models[0].model
    ask = [{"role": "user", "content": "What is the weather like in Paris right now?"}]
    first = client.chat(model=name, messages=ask, tools=[WEATHER],
                        options={"temperature": 0, "num_predict": 80})
    (call,) = first.message.tool_calls
    assert call.function.name == "get_weather" and "Paris" in call.function.arguments["city"]
    assert "<tool_call>" not in first.message.content
    # the tool still offered, as an agent loop sends it: this 0.5B model calls it again, and
    # the server's agent-loop guard (runtime/chat/agent_loop.py) gets the answer instead
    second = client.chat(model=name, options={"temperature": 0, "num_predict": 60},
                         tools=[WEATHER],
                         messages=[*ask, first.message.model_dump(exclude_none=True),
                                   {"role": "tool", "content": "sunny, 21 C",
                                    "tool_name": "get_weather"}])
    assert "21" in second.message.content and not second.message.tool_calls
