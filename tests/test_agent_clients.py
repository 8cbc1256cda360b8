"""Agent frameworks and LLM libraries from PyPI, unmodified, against the Qwen2.5-Coder artifact
(one server for the session: conftest's instruct_ollama): pydantic-ai through its OpenAI model,
llama-index's Ollama class, `llm` with the llm-ollama plugin, and smolagents' ToolCallingAgent
with its OpenAIServerModel. Each does one real thing a user would: a tool round trip, a
structured answer, a plain answer."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.slow

WEATHER = "sunny, 21 degrees Celsius"
ASK_WEATHER = "What is the weather in Paris right now?"


class City(BaseModel):
    name: str
    country: str


@pytest.fixture(scope="module")
def qwen(instruct_ollama):
    """The server, and the model's name as Ollama's clients must spell it."""
    (model,) = httpx.get(instruct_ollama.url + "/api/tags").json()["models"]
    return instruct_ollama, model["name"].removesuffix(":latest")


def test_pydantic_ai_calls_a_tool_and_fills_a_structured_output(qwen):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    server, _ = qwen
    model = OpenAIChatModel("qwen", provider=OpenAIProvider(base_url=server.url + "/v1",
                                                            api_key="unused"))
    settings = {"temperature": 0, "max_tokens": 96}
    asked: list[str] = []
    agent = Agent(model, model_settings=settings)  # type: ignore[arg-type]

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        asked.append(city)
        return WEATHER

    result = agent.run_sync(ASK_WEATHER)
    assert asked and asked[0] == "Paris" and isinstance(result.output, str)
    structured = Agent(model, output_type=City, model_settings=settings)  # type: ignore[arg-type]
    city = structured.run_sync("The capital of France.").output
    assert (city.name, city.country) == ("Paris", "France")


def test_llama_index_ollama_completes_and_chats(qwen):
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.ollama import Ollama

    server, name = qwen
    llm = Ollama(model=name, base_url=server.url, request_timeout=300, temperature=0,
                 additional_kwargs={"num_predict": 16})
    assert llm.metadata.context_window == 4096  # from /api/show's model_info
    assert "Paris" in llm.complete("The capital of France is").text
    answer = llm.chat([ChatMessage(role="user", content="Capital of France? One word.")])
    assert "Paris" in answer.message.content
    streamed = "".join(r.delta or "" for r in llm.stream_complete("The capital of France is"))
    assert "Paris" in streamed


def test_llm_with_llm_ollama_finds_and_prompts_the_model(qwen, monkeypatch):
    import llm

    server, name = qwen
    monkeypatch.setenv("OLLAMA_HOST", server.url)  # llm-ollama lists the server's models
    model = llm.get_model(f"ollama/{name}")
    answer = model.prompt("Capital of France? One word.", temperature=0, num_predict=8)
    assert "Paris" in answer.text()


def test_smolagents_tool_calling_agent_uses_the_tool_and_answers(qwen):
    from smolagents import OpenAIServerModel, ToolCallingAgent, tool

    server, _ = qwen
    asked: list[str] = []

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city.

        Args:
            city: the city's name
        """
        asked.append(city)
        return WEATHER

    model = OpenAIServerModel(model_id="qwen", api_base=server.url + "/v1", api_key="unused",
                              temperature=0, max_tokens=128)
    agent = ToolCallingAgent(tools=[get_weather], model=model, max_steps=3, verbosity_level=0)
    answer = str(agent.run(ASK_WEATHER))
    assert asked == ["Paris"] and "21" in answer
