"""The agent-loop guard (runtime/chat/agent_loop.py) with scripted generations: which calls are
repeats, what goes out instead, and what the second try asks for. What it does for a real 0.5B
model is measured in bench/agent_loop.py and checked in test_responses_e2e.py."""

from __future__ import annotations

from collections.abc import Iterator

from runtime.chat.agent_loop import ANSWER_FROM_RESULT, answered_calls, guard
from runtime.chat.tool_parse import parse_tool_calls
from runtime.chat.tools import Tool, ToolCall
from runtime.generation import (
    CallArguments,
    CallStart,
    ChatMessage,
    Event,
    Finish,
    GenerationRequest,
    collect,
)

WEATHER = Tool("get_weather")
ASKED = ChatMessage("user", "Weather in Paris?")
CALLED = ChatMessage("assistant", "", (ToolCall("c1", "get_weather", '{"city": "Paris"}'),))
RESULT = ChatMessage("tool", "18 C", tool_call_id="c1")
AFTER_RESULT = (ASKED, CALLED, RESULT)


def call(name: str, arguments: str, index: int = 0) -> list[Event]:
    return [CallStart(index, f"n{index}", name), CallArguments(index, arguments)]


class Script:
    """generate(): the first script for the first request, the second for the next."""

    def __init__(self, *scripts: list[Event]):
        self.scripts = list(scripts)
        self.requests: list[GenerationRequest] = []

    def __call__(self, request: GenerationRequest) -> Iterator[Event]:
        self.requests.append(request)
        yield from self.scripts[len(self.requests) - 1]


def run(script: Script, messages=AFTER_RESULT, choice: str = "auto"):
    request = GenerationRequest(messages=messages, tools=(WEATHER,), tool_choice=choice)
    return collect(guard(request, script))


def test_answered_calls_are_those_of_the_turn_the_results_follow():
    assert answered_calls(AFTER_RESULT) == {("get_weather", '{"city": "Paris"}')}
    assert answered_calls((ASKED, CALLED)) == set()  # no result yet
    assert answered_calls((*AFTER_RESULT, ChatMessage("user", "And London?"))) == set()
    assert answered_calls((ASKED,)) == set()


def test_a_repeat_is_sampled_again_as_text_and_the_counts_add_up():
    script = Script([*call("get_weather", '{ "city":"Paris" }'), Finish("tool_calls", 50, 12, 0)],
                    ["It is 18 C in Paris.", Finish("stop", 50, 8, 49)])
    answer = run(script)
    assert answer.text == "It is 18 C in Paris." and answer.tool_calls == ()
    assert answer.finish.reason == "stop" and answer.finish.completion_tokens == 20
    again = script.requests[1]
    assert again.text_only and again.tool_choice == "none" and not again.calls_tools
    assert again.messages == (ChatMessage("system", ANSWER_FROM_RESULT), *AFTER_RESULT)


def test_the_second_try_adds_its_line_to_the_system_message():
    script = Script([*call("get_weather", '{"city": "Paris"}'), Finish("tool_calls", 5, 9, 0)],
                    ["18 C.", Finish("stop", 5, 3, 0)])
    run(script, messages=(ChatMessage("system", "Be brief."), *AFTER_RESULT))
    first = (script.requests[1].messages or ())[0]
    assert first == ChatMessage("system", f"Be brief.\n\n{ANSWER_FROM_RESULT}")


def test_a_new_call_goes_out_and_a_repeat_beside_it_is_dropped():
    script = Script([*call("get_weather", '{"city": "Paris"}'),
                     *call("get_weather", '{"city": "London"}', 1), Finish("tool_calls", 5, 9, 0)])
    answer = run(script)
    assert [(c.name, c.arguments, c.id) for c in answer.tool_calls] == [
        ("get_weather", '{"city": "London"}', "n1")]
    assert answer.finish.reason == "tool_calls" and len(script.requests) == 1


def test_text_already_sent_is_the_answer_when_a_repeat_follows_it():
    script = Script(["It is 18 C. ", *call("get_weather", '{"city": "Paris"}'),
                     Finish("tool_calls", 5, 9, 0)])
    answer = run(script)
    assert answer.text == "It is 18 C. " and answer.tool_calls == ()
    assert answer.finish.reason == "stop" and len(script.requests) == 1


def test_no_guard_for_a_forced_choice_or_a_fresh_question():
    repeat = [*call("get_weather", '{"city": "Paris"}'), Finish("tool_calls", 5, 9, 0)]
    assert len(run(Script(repeat), choice="required").tool_calls) == 1
    assert len(run(Script(repeat), messages=(ASKED,)).tool_calls) == 1


def test_a_call_in_doubled_braces_is_read_as_the_call_it_means():
    text = '{{"name": "get_weather", "arguments": {"city": "Paris"}}}'
    content, calls = parse_tool_calls(text, "hermes", [WEATHER])
    assert content == "" and [(c.name, c.arguments) for c in calls] == [
        ("get_weather", '{"city": "Paris"}')]
    assert parse_tool_calls("{{ not a call }}", "hermes", [WEATHER]) == ("{{ not a call }}", [])


def test_a_bare_call_closing_a_fence_it_never_opened_is_a_call():
    # the lazy grammar's bare call allows a closing ``` (for a fenced call); Qwen 0.5B writes it
    # after a tool result even without the opening one
    text = '{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    assert parse_tool_calls(text, "hermes", [WEATHER])[1][0].arguments == '{"city": "Paris"}'
