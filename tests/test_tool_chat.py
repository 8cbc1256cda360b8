"""A chat with tools as each template family's model reads it: the model's own template renders
the tools and the history of calls and results (Qwen2.5 for Hermes, Mistral Nemo, a Llama 3.1
style template), templates that know no tools get the generic instruction, and tool_choice
"none" renders no tools. No model is loaded: these are the prompts, checked as text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tool_calls import WEATHER

from runtime.chat.fallbacks import FALLBACKS
from runtime.chat.template import ChatTemplate
from runtime.chat.tool_prompt import render_chat
from runtime.chat.tools import ToolCall, tool_family, tools_from_openai
from runtime.errors import RequestError
from runtime.generation import ChatMessage, Defaults, GenerationRequest, Sampling

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
QWEN = (TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
NEMO = (TEMPLATES / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text()
# Written for this test in the way Meta's Llama 3.1 template works (tools as JSON in the
# system turn, calls as {"name", "parameters"} with arguments through tojson, results under
# the ipython role); the real one is not redistributed here.
LLAMA31_STYLE = (
    "{{ bos_token }}{% if not tools is defined %}{% set tools = none %}{% endif %}"
    "<|start_header_id|>system<|end_header_id|>\n\n"
    "{% if tools is not none %}Environment: ipython\n"
    'Respond in the format {"name": function name, "parameters": dictionary of argument '
    "name and its value}.\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}{% endif %}"
    "<|eot_id|>"
    "{% for m in messages %}"
    "{% if m.tool_calls is defined %}"
    "{% if m.tool_calls | length != 1 %}"
    "{{ raise_exception('This model only supports single tool-calls at once!') }}{% endif %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
    '{"name": "{{ m.tool_calls[0].function.name }}", "parameters": '
    "{{ m.tool_calls[0].function.arguments | tojson }}}<|eot_id|>"
    "{% elif m.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>\n\n"
    "{{ m.content }}<|eot_id|>"
    "{% else %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{% endif %}")
TOOLS = tuple(tools_from_openai([WEATHER]))
QUESTION = ChatMessage("user", "Weather in Paris?")
CALL = ToolCall("call_abc", "get_weather", '{"city": "Paris"}')
ROUND_TRIP = (QUESTION, ChatMessage("assistant", "", tool_calls=(CALL,)),
              ChatMessage("tool", "18 C, cloudy", tool_call_id="call_abc"))


def request(messages: tuple[ChatMessage, ...], choice: str = "auto") -> GenerationRequest:
    return Defaults(Sampling(), 64, "").request(messages=messages, tools=TOOLS,
                                                 tool_choice=choice)


def prompt(template: str, messages: tuple[ChatMessage, ...], choice: str = "auto") -> str:
    return render_chat(ChatTemplate(template, "<s>", "</s>"), tool_family(template),
                       request(messages, choice))


def test_qwen_renders_the_tools_and_the_history_of_calls_and_results():
    text = prompt(QWEN, ROUND_TRIP)
    assert "<tools>\n" + json.dumps(WEATHER, ensure_ascii=False) + "\n</tools>" in text
    # arguments arrive as a JSON string (OpenAI's) and go out once-encoded, not as a string
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n' \
           "</tool_call>" in text
    assert "<tool_response>\n18 C, cloudy\n</tool_response>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_tool_choice_none_renders_no_tools_but_keeps_the_history():
    text = prompt(QWEN, ROUND_TRIP, "none")
    assert "<tools>" not in text and "get_weather" in text
    assert "<tool_response>\n18 C, cloudy\n</tool_response>" in text


def test_mistral_renders_available_tools_and_nine_character_call_ids():
    text = prompt(NEMO, ROUND_TRIP)
    assert "[AVAILABLE_TOOLS]" in text and '"name": "get_weather"' in text
    call = json.loads(text.split("[TOOL_CALLS]")[1].split("</s>")[0])
    assert len(call[0]["id"]) == 9 and call[0]["id"].isalnum()
    # Nemo's template writes the result's content as is (it expects JSON text there)
    assert f'[TOOL_RESULTS]{{"content": 18 C, cloudy, "call_id": "{call[0]["id"]}"}}' in text


def test_llama3_style_template_gets_parameters_as_an_object():
    assert tool_family(LLAMA31_STYLE) == "llama3"
    text = prompt(LLAMA31_STYLE, ROUND_TRIP)
    assert "Environment: ipython" in text and '"name": "get_weather"' in text
    assert '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>' in text
    assert "<|start_header_id|>ipython<|end_header_id|>\n\n18 C, cloudy" in text


def test_a_template_refusing_parallel_calls_is_a_400_not_a_500():
    two = (QUESTION, ChatMessage("assistant", "", tool_calls=(CALL, CALL)))
    with pytest.raises(RequestError, match="single tool-calls"):
        prompt(LLAMA31_STYLE, two)


@pytest.mark.parametrize("name", ["gemma", "chatml"])
def test_templates_without_tools_get_the_generic_instruction_and_plain_turns(name):
    template = FALLBACKS[name][0]
    assert tool_family(template) == "generic"
    text = prompt(template, (ChatMessage("system", "Be brief."), *ROUND_TRIP,
                             ChatMessage("user", "And tomorrow?")))
    assert "Be brief.\n\nYou can call the following tools" in text
    assert '- get_weather: Current weather in a city' in text
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in text
    # the result and the next question form one user turn: roles still alternate
    assert "Tool result:\n18 C, cloudy\n\nAnd tomorrow?" in text
    assert "tool" not in [line.strip() for line in text.splitlines()]  # no "tool" role


def test_generic_required_and_named_choices_are_said_in_the_instruction():
    template = FALLBACKS["chatml"][0]
    assert "You must call a tool now." in prompt(template, (QUESTION,), "required")
    assert "You must call the tool get_weather now." in prompt(template, (QUESTION,),
                                                               "get_weather")
    assert "You can call" not in prompt(template, (QUESTION,), "none")


def test_chats_without_tools_render_as_before():
    plain = (ChatMessage("user", "a"), ChatMessage("user", "b"))
    template = ChatTemplate(FALLBACKS["chatml"][0])
    no_tools = Defaults(Sampling(), 64, "").request(messages=plain)
    assert render_chat(template, "generic", no_tools) == template.render(plain)
    assert "<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>" in \
        template.render(plain)
