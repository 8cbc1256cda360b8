"""A chat with tools as the model reads it. A template of a family that knows tools gets them
as transformers gives them; for one that knows none (family "generic") the tools go into the
system message as generic_instruction(), past calls into the assistant's text in the format
that instruction asks for, and tool results into user turns, since such templates know no
"tool" role (some raise on one, others require roles to alternate)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from runtime.chat.template import ChatTemplate
from runtime.chat.tools import Tool, ToolCall, generic_instruction
from runtime.generation import ChatMessage, GenerationRequest


def render_chat(template: ChatTemplate, family: str, request: GenerationRequest) -> str:
    """The request's chat as prompt text; tool_choice "none" renders no tools."""
    assert request.messages is not None
    if family == "generic":
        return template.render(generic_messages(request.messages, request.tools,
                                                request.tool_choice,
                                                request.parallel_tool_calls))
    return template.render(request.messages,
                           tools=request.tools if request.calls_tools else (), family=family)


def generic_messages(messages: Sequence[ChatMessage], tools: Sequence[Tool], choice: str,
                     parallel: bool) -> list[ChatMessage]:
    """The chat with tools taught in the system message (none when choice is "none")."""
    out: list[ChatMessage] = []
    joins = False  # the last message was a tool result: the next user turn joins it
    for m in messages:
        result = m.role == "tool"
        if result:
            m = ChatMessage("user", _result_text(m))
        elif m.tool_calls:
            text = _calls_text(m.tool_calls)
            m = ChatMessage("assistant", f"{m.content}\n{text}" if m.content.strip() else text)
        if out and m.role == "user" and out[-1].role == "user" and (result or joins):
            # results of parallel calls, or a result and the user's next words: one turn
            out[-1] = replace(out[-1], content=f"{out[-1].content}\n\n{m.content}")
        else:
            out.append(m)
        joins = result
    if not tools or choice == "none":
        return out
    instruction = generic_instruction(tools, choice, parallel)
    if out and out[0].role == "system":
        return [replace(out[0], content=f"{out[0].content}\n\n{instruction}"), *out[1:]]
    return [ChatMessage("system", instruction), *out]


def _calls_text(calls: Sequence[ToolCall]) -> str:
    objects = [{"name": call.name, "arguments": _arguments(call.arguments)} for call in calls]
    return json.dumps(objects[0] if len(objects) == 1 else objects, ensure_ascii=False)


def _arguments(text: str) -> object:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text  # not JSON: shown as the client sent it


def _result_text(m: ChatMessage) -> str:
    who = f" of {m.name}" if m.name else ""
    return f"Tool result{who}:\n{m.content}"
