"""What a small model does wrong in an agent loop, caught where every dialect passes (the engine
wraps each generation in `guard`): right after a tool's result, it calls the same tool again with
the same arguments (or writes that call as text), and the loop never ends.

The rule, which keeps OpenAI's contract (a call the model makes is a call the client gets, unless
it is one the client has just answered):
- only with tool_choice "auto" and a history that ends in results of the last assistant turn's
  calls: a forced choice asked for a call, and a call after a user turn is never a repeat;
- calls identical (name and arguments, as JSON) to one of that turn's are dropped; new calls go
  out as they are;
- if every call was a repeat and no text went out yet, the answer is sampled again as text
  (`second_try`): the tools left out of the prompt, as tool_choice "none" renders it, and one
  line in the system message that says to answer from the result. Measured on ten round trips
  with Qwen2.5-Coder-0.5B (bench/agent_loop.py), that line is what makes the difference: with
  the tools still shown, or without the line, the model writes its call again as text.

Calls are held back until the answer ends (a repeat is known only once its arguments are), so in
this one situation a streamed call arrives whole at the end; text streams as it comes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from runtime.chat.tools import ToolCall
from runtime.generation import (
    CallArguments,
    CallStart,
    ChatMessage,
    Event,
    Finish,
    GenerationRequest,
)

log = logging.getLogger(__name__)

ANSWER_FROM_RESULT = ("When a tool result is given, answer the user's question from it in one "
                      "sentence.")

Generate = Callable[[GenerationRequest], Iterator[Event]]
Key = tuple[str, str]  # a call's name and its arguments in canonical JSON


def answered_calls(messages: Sequence[ChatMessage]) -> set[Key]:
    """The calls of the last assistant turn when only their results follow it; else empty."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.role == "tool":
            continue
        if m.role == "assistant" and m.tool_calls and i < len(messages) - 1:
            return {_key(call) for call in m.tool_calls}
        return set()
    return set()


def _key(call: ToolCall) -> Key:
    try:
        arguments = json.dumps(json.loads(call.arguments or "{}"), sort_keys=True)
    except ValueError:
        arguments = call.arguments.strip()
    return call.name, arguments


def guard(request: GenerationRequest, generate: Generate) -> Iterator[Event]:
    """`generate(request)`, with repeated calls dropped or re-sampled as the module says."""
    if not request.calls_tools or request.tool_choice != "auto" or request.text_only \
            or request.messages is None:
        return generate(request)
    answered = answered_calls(request.messages)
    if not answered:
        return generate(request)
    return _guarded(request, generate, answered)


def _guarded(request: GenerationRequest, generate: Generate,
             answered: set[Key]) -> Iterator[Event]:
    calls: list[ToolCall] = []
    wrote = False
    with _closing(generate(request)) as events:
        for event in events:
            if isinstance(event, CallStart):
                calls.append(ToolCall(event.id, event.name, ""))
            elif isinstance(event, CallArguments):
                calls[event.index].arguments += event.fragment
            elif isinstance(event, Finish):
                finish = event
                break
            else:
                wrote = wrote or isinstance(event, str) and bool(event.strip())
                yield event
        else:
            return
    fresh = [call for call in calls if _key(call) not in answered]
    if len(fresh) < len(calls):
        log.info("dropped %d tool call(s) that repeat the calls just answered",
                 len(calls) - len(fresh))
    if fresh or not calls:
        yield from _calls(fresh)
        yield finish
        return
    if wrote:  # the text already sent is the answer
        yield replace(finish, reason="stop")
        return
    second = None
    with _closing(generate(second_try(request))) as events:
        for event in events:
            if isinstance(event, Finish):
                second = event
            else:
                yield event
    if second is None:
        return
    yield replace(second, completion_tokens=finish.completion_tokens + second.completion_tokens,
                  prompt_ns=finish.prompt_ns + second.prompt_ns,
                  generation_ns=finish.generation_ns + second.generation_ns)


def second_try(request: GenerationRequest) -> GenerationRequest:
    """The request again, for an answer in text from the results the chat holds."""
    messages = list(request.messages or ())
    if messages and messages[0].role == "system":
        messages[0] = replace(messages[0],
                              content=f"{messages[0].content}\n\n{ANSWER_FROM_RESULT}")
    else:
        messages.insert(0, ChatMessage("system", ANSWER_FROM_RESULT))
    return replace(request, messages=tuple(messages), tool_choice="none", text_only=True)


@contextmanager
def _closing(events: Iterator[Event]) -> Iterator[Iterator[Event]]:
    """The generation, stopped when we are done with it (the decoder frees its sequence then,
    not when the iterator is collected)."""
    try:
        yield events
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def _calls(calls: list[ToolCall]) -> Iterator[Event]:
    for index, call in enumerate(calls):
        yield CallStart(index, call.id, call.name)
        yield CallArguments(index, call.arguments)
