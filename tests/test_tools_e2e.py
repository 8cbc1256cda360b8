"""Tool calling end to end: real artifacts run as subprocesses, real clients.

A tiny random model with Qwen2.5's template shows what the grammar alone guarantees (a forced
choice is a well-formed call, whatever the weights); Qwen2.5-Coder-0.5B-Instruct shows what a
real small model does with the openai SDK and LangChain."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from conftest import build_cli, launch
from tool_calls import WEATHER

pytestmark = pytest.mark.usefixtures("built")

# Qwen2.5's markup in a few lines: its real template's tool prompt is longer than the tiny
# model's 512-token context
HERMES_SHORT = (
    "{% if tools %}<|im_start|>system\nTools:{% for t in tools %} {{ t.function.name }}"
    "{% endfor %}\nCall one as <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>"
    "<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time now in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                   "required": ["zone"]}}}
# for the random model: an enum leaves it nothing to ramble in
UNIT = {"type": "function", "function": {
    "name": "set_unit", "parameters": {"type": "object", "properties": {
        "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["unit"]}}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris right now?"}]


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=300)


# -- the tiny random model: what the grammar guarantees




@pytest.fixture(scope="module")
def tiny_qwen(tiny_gguf, tmp_path_factory, shared_cache):
    out = tmp_path_factory.mktemp("tools") / "tiny-qwen.llamabundle"
    build_cli(tiny_gguf, "-o", out, "--chat-template", HERMES_SHORT, cache=shared_cache)
    server = launch(out)
    yield server
    server.stop()


@pytest.mark.parametrize("choice", ["required", {"type": "function",
                                                 "function": {"name": "set_unit"}}])
def test_forced_choice_makes_even_random_weights_call_the_tool(tiny_qwen, choice):
    answer = sdk(tiny_qwen.url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], tools=[UNIT, TIME],
        tool_choice="required" if choice == "required" else {  # type: ignore[arg-type]
            "type": "function", "function": {"name": "set_unit"}},
        parallel_tool_calls=False, temperature=1.0, seed=7, max_tokens=400)
    choice0 = answer.choices[0]
    assert choice0.finish_reason == "tool_calls", choice0
    assert choice0.message.content is None
    (call,) = choice0.message.tool_calls or []
    assert call.id.startswith("call_")
    if call.function.name == "set_unit":
        assert json.loads(call.function.arguments)["unit"] in ("celsius", "fahrenheit")
    else:
        assert choice == "required" and call.function.name == "get_time"
        assert isinstance(json.loads(call.function.arguments)["zone"], str)


def test_forced_call_streams_as_deltas_with_no_markup(tiny_qwen):
    stream = sdk(tiny_qwen.url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], tools=[UNIT],
        tool_choice="required", parallel_tool_calls=False, temperature=1.0, seed=3,
        max_tokens=400, stream=True)
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks]
    assert all(not d.content for d in deltas)  # "<tool_call>" never shows
    starts = [tc for d in deltas for tc in d.tool_calls or [] if tc.id]
    assert [(s.index, s.function and s.function.name) for s in starts] == [(0, "set_unit")]
    arguments = "".join(tc.function.arguments or "" for d in deltas for tc in d.tool_calls or []
                        if tc.function)
    assert json.loads(arguments)["unit"] in ("celsius", "fahrenheit")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_answers_text(tiny_qwen):
    answer = sdk(tiny_qwen.url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], tools=[UNIT],
        tool_choice="none", max_tokens=8, seed=1)
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_forced_tool_choice_and_a_json_schema_together_are_a_400(tiny_qwen):
    r = httpx.post(tiny_qwen.url + "/v1/chat/completions", json={
        "messages": ASK_WEATHER, "tools": [UNIT], "tool_choice": "required",
        "response_format": {"type": "json_object"}})
    assert r.status_code == 400 and "forced tool_choice" in r.json()["error"]["message"]


def test_strict_json_schema_with_refs_and_nullables_holds_even_random_weights(tiny_qwen):
    # what openai's and LangChain's strict mode send for nested pydantic models
    schema = {"type": "object", "additionalProperties": False,
              "$defs": {"Unit": {"enum": ["celsius", "fahrenheit"]}},
              "properties": {"unit": {"$ref": "#/$defs/Unit"}, "ok": {"type": "boolean"},
                             "maybe": {"anyOf": [{"type": "boolean"}, {"type": "null"}]}},
              "required": ["unit", "ok", "maybe"]}
    answer = sdk(tiny_qwen.url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], seed=5, max_tokens=300,
        response_format={"type": "json_schema", "json_schema": {  # type: ignore[arg-type]
            "name": "reading", "strict": True, "schema": schema}})
    value = json.loads(answer.choices[0].message.content or "")
    assert list(value) == ["unit", "ok", "maybe"]
    assert value["unit"] in ("celsius", "fahrenheit") and isinstance(value["ok"], bool)
    assert value["maybe"] in (True, False, None)


def test_logprobs_from_the_real_engine_over_http(tiny_qwen):
    answer = sdk(tiny_qwen.url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=4, extra_body={"repeat_penalty": 1.0})
    content = answer.choices[0].logprobs.content or []  # type: ignore[union-attr]
    assert len(content) == answer.usage.completion_tokens  # type: ignore[union-attr]
    for entry in content:  # greedy, no penalty: the pick is the likeliest
        assert len(entry.top_logprobs) == 4
        assert entry.token == entry.top_logprobs[0].token
        assert entry.logprob == entry.top_logprobs[0].logprob <= 0


# -- Qwen2.5-Coder-0.5B-Instruct, greedy


@pytest.fixture(scope="module")
def qwen(instruct_gguf, tmp_path_factory, shared_cache):
    out = tmp_path_factory.mktemp("tools") / "qwen.llamabundle"
    build_cli(instruct_gguf, "-o", out, "--temp", "0", cache=shared_cache)
    server = launch(out, timeout=300)
    yield server
    server.stop()


def calls_of(answer) -> list[tuple[str, dict]]:
    message = answer.choices[0].message
    return [(c.function.name, json.loads(c.function.arguments))
            for c in message.tool_calls or []]


@pytest.mark.slow
def test_qwen_calls_the_weather_tool_unary_and_streamed(qwen):
    client = sdk(qwen.url)
    answer = client.chat.completions.create(model="qwen", messages=ASK_WEATHER,
                                            tools=[WEATHER, TIME], max_tokens=80)
    assert calls_of(answer) == [("get_weather", {"city": "Paris"})]
    assert answer.choices[0].finish_reason == "tool_calls"
    with client.chat.completions.stream(model="qwen", messages=ASK_WEATHER,  # type: ignore
                                        tools=[WEATHER, TIME], max_tokens=80) as stream:
        final = stream.get_final_completion()
    assert calls_of(final) == [("get_weather", {"city": "Paris"})]


@pytest.mark.slow
def test_qwen_round_trip_answers_from_the_tool_result(qwen):
    client = sdk(qwen.url)
    first = client.chat.completions.create(model="qwen", messages=ASK_WEATHER,
                                           tools=[WEATHER], max_tokens=80)
    call = (first.choices[0].message.tool_calls or [])[0]
    history = [{"role": "system", "content": "When a tool result is given, answer the user's "
                "question from it in one sentence."},
               *ASK_WEATHER, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id,
                "content": json.dumps({"temperature_c": 18, "sky": "cloudy"})}]
    # tool_choice none and a system message, as a client can ask: left to itself this 0.5B
    # model calls the same tool again (with auto; the server's agent-loop guard then steps
    # in, test_responses_e2e.py) or writes the call as text (with none alone)
    answer = client.chat.completions.create(model="qwen", messages=history,  # type: ignore
                                            tools=[WEATHER], tool_choice="none",
                                            max_tokens=60)
    text = answer.choices[0].message.content or ""
    assert "18" in text and answer.choices[0].message.tool_calls is None, text


@pytest.mark.slow
def test_qwen_named_and_required_choices_are_enforced(qwen):
    client = sdk(qwen.url)
    named = client.chat.completions.create(
        model="qwen", messages=ASK_WEATHER, tools=[WEATHER, TIME], max_tokens=80,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [name for name, _ in calls_of(named)] == ["get_time"]  # not the one it would pick
    required = client.chat.completions.create(
        model="qwen", messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER], tool_choice="required", max_tokens=80)
    assert [name for name, _ in calls_of(required)] == ["get_weather"]
    none = client.chat.completions.create(model="qwen", messages=ASK_WEATHER, max_tokens=40,
                                          tools=[WEATHER], tool_choice="none")
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content


@pytest.mark.slow
def test_langchain_bind_tools_and_structured_output(qwen):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return "18 C"

    class Person(BaseModel):
        """A person mentioned in the text."""

        name: str
        age: int

    llm = ChatOpenAI(base_url=qwen.url + "/v1", api_key="none", model="qwen",  # type: ignore
                     max_tokens=80, timeout=300)
    message = llm.bind_tools([get_weather]).invoke("What is the weather like in Paris now?")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris"})]
    person = llm.with_structured_output(Person).invoke("Alice is 31 years old.")
    assert person == Person(name="Alice", age=31)
