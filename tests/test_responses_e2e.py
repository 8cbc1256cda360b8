"""OpenAI's Responses API end to end: an artifact of Qwen2.5-Coder-0.5B-Instruct run as a
subprocess, the official `openai` SDK (create, stream, tools, a JSON schema), the `openai-agents`
SDK with its default model class and one function tool, and the agent loop's round trip
(bench/agent_loop.py) through the guard that stops a small model repeating its call."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from conftest import build_cli, launch

from bench import agent_loop

pytestmark = [pytest.mark.usefixtures("built"), pytest.mark.slow]

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


@pytest.fixture(scope="module")
def qwen(instruct_gguf, tmp_path_factory, shared_cache):
    out = tmp_path_factory.mktemp("responses") / "qwen.llamabundle"
    build_cli(instruct_gguf, "-o", out, "--temp", "0", cache=shared_cache)
    server = launch(out, timeout=300)
    yield server
    server.stop()


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=300)


def test_unary_and_streamed_text(qwen):
    client = sdk(qwen.url)
    response = client.responses.create(model="qwen", input="What is the capital of France?",
                                       instructions="Answer in one short sentence.",
                                       max_output_tokens=30)
    assert "Paris" in response.output_text and response.status == "completed"
    assert response.usage and response.usage.output_tokens > 0
    with client.responses.stream(model="qwen", input="What is the capital of France?",
                                 instructions="Answer in one short sentence.",
                                 max_output_tokens=30) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 1 and "".join(deltas) == final.output_text == response.output_text


def test_a_tool_call_unary_and_streamed(qwen):
    client = sdk(qwen.url)
    ask = "What is the weather like in Paris right now?"
    response = client.responses.create(model="qwen", input=ask, tools=[WEATHER],  # type: ignore
                                       max_output_tokens=80)
    calls = [(i.name, json.loads(i.arguments)) for i in response.output
             if i.type == "function_call"]
    assert calls == [("get_weather", {"city": "Paris"})]
    with client.responses.stream(model="qwen", input=ask, tools=[WEATHER],  # type: ignore
                                 max_output_tokens=80) as stream:
        final = stream.get_final_response()
    (item,) = final.output
    assert item.type == "function_call" and json.loads(item.arguments) == {"city": "Paris"}


def test_a_json_schema_answer(qwen):
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    response = sdk(qwen.url).responses.create(
        model="qwen", input="Alice is 31 years old.", max_output_tokens=60,
        text={"format": {"type": "json_schema", "name": "person", "schema": schema,
                         "strict": True}})
    assert json.loads(response.output_text) == {"name": "Alice", "age": 31}


def test_openai_agents_sdk_runs_one_tool(qwen):
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        asked.append(city)
        return json.dumps({"city": city, "temperature_c": 18, "sky": "cloudy"})

    client = openai.AsyncOpenAI(base_url=qwen.url + "/v1", api_key="none", max_retries=0)
    agent = Agent(name="weather", instructions="You answer questions about the weather.",
                  tools=[get_weather],
                  model=OpenAIResponsesModel(model="qwen", openai_client=client))
    result = asyncio.run(Runner.run(agent, "What is the weather like in Paris right now?",
                                    max_turns=4))
    assert asked == ["Paris"]  # called once: not again after its result
    assert "18" in str(result.final_output), result.final_output


def test_agent_round_trips_answer_from_the_result(qwen):
    outcomes = agent_loop.run(qwen.url, "chat", temperature=0, seed=1)
    passed = [o for o in outcomes if o.ok]
    assert len(passed) >= 9, [o for o in outcomes if not o.ok]
