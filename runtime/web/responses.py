"""OpenAI's Responses dialect: POST /v1/responses, stateless (as Ollama's and llama.cpp's are).

`input` (a string, or items: messages, function_call, function_call_output), `instructions`,
function `tools`, `tool_choice`, `text.format` and the sampling fields become the same
`GenerationRequest` chat completions builds; the engine's events become the Responses stream's
typed events, and a unary answer is that stream's final response object, so the two never
differ.

Not served, each refused with a 400 that says so: stored state (`previous_response_id`,
`conversation`, `item_reference` items, `background`), hosted tools (web search, file search,
computer use, ...) and non-text input (images, files, audio). `reasoning` items a client sends
back are skipped: this server writes none.
"""

from __future__ import annotations

import collections
import itertools
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from runtime.chat.tools import ToolCall, tool_choice_from_openai, tools_from_openai
from runtime.errors import RequestError
from runtime.generation import CallArguments, CallStart, ChatMessage, Event, Finish, Sources
from runtime.settings import MAX_TOKENS
from runtime.state import State
from runtime.web.abandon import answered
from runtime.web.knowledge import knowledge_usage, sources_json
from runtime.web.openai import ResponseFormat
from runtime.web.schemas import Request, SamplingFields
from runtime.web.streaming import typed_sse

ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}
NO_STORE = ("this server keeps no responses: send the whole conversation in `input` "
            "(the Responses API without store)")

# ---- requests


class TextConfig(Request):
    format: ResponseFormat | None = None


class ResponsesRequest(SamplingFields):
    input: str | list[Any]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    metadata: dict[str, Any] | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None

    def stateless(self) -> None:
        for name in ("previous_response_id", "conversation"):
            if getattr(self, name):
                raise RequestError(f"{name}: {NO_STORE}", param=name)
        if self.background:
            raise RequestError("background: not served; ask without it (or stream)",
                               param="background")

    def messages(self) -> list[ChatMessage]:
        given = [ChatMessage("user", self.input)] if isinstance(self.input, str) \
            else chat_messages(self.input)
        if self.instructions:
            given.insert(0, ChatMessage("system", self.instructions))
        if not given:
            raise RequestError("input: no messages", param="input")
        return given

    def fields(self) -> dict[str, Any]:
        """The keywords of `Defaults.request` besides the messages."""
        tools = tools_from_openai([_function_tool(t, i) for i, t in enumerate(self.tools or [])])
        schema = self.text.format.constraint() if self.text and self.text.format else None
        return {"max_tokens": self.max_output_tokens, "stop": self.stop, "json_schema": schema,
                "tools": tools, "tool_choice": tool_choice_from_openai(
                    _choice(self.tool_choice), tools),
                "parallel_tool_calls": self.parallel_tool_calls, **self.sampling()}


def _function_tool(obj: object, i: int) -> dict[str, Any]:
    """A Responses tool (flat: {"type": "function", "name", "parameters", ...}) in the chat
    completions form that tools_from_openai checks."""
    if not isinstance(obj, dict):
        raise RequestError(f"tools[{i}]: expected an object", param="tools")
    if obj.get("type") != "function":
        raise RequestError(f"tools[{i}]: only function tools are served, not "
                           f"{str(obj.get('type'))[:40]!r}", param="tools")
    return {"type": "function", "function": {
        k: obj[k] for k in ("name", "description", "parameters") if k in obj}}


def _choice(obj: str | dict[str, Any] | None) -> object:
    if isinstance(obj, dict):
        if obj.get("type") != "function":
            raise RequestError("tool_choice: expected \"auto\", \"none\", \"required\" or "
                               "{\"type\": \"function\", \"name\": ...}", param="tool_choice")
        return {"type": "function", "function": {"name": obj.get("name")}}
    return obj


def chat_messages(items: list[Any]) -> list[ChatMessage]:
    """Input items as a chat: a function_call joins the assistant turn before it (or starts
    one), a function_call_output is a tool result naming its call's tool."""
    out: list[ChatMessage] = []
    names: dict[str, str] = {}  # call_id -> the tool's name
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise RequestError(f"{where}: expected an object", param="input")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            role = ROLES.get(role) if isinstance(role, str) else None
            if role is None:
                raise RequestError(f"{where}.role: expected user, system, developer or "
                                   "assistant", param="input")
            out.append(ChatMessage(role, _text(item.get("content"), where + ".content")))
        elif kind == "function_call":
            call = ToolCall(_string(item, "call_id", where), _string(item, "name", where),
                            _string(item, "arguments", where))
            names[call.id] = call.name
            if out and out[-1].role == "assistant" and (out[-1].tool_calls or out[-1].content):
                last = out.pop()
                out.append(ChatMessage("assistant", last.content, (*last.tool_calls, call)))
            else:
                out.append(ChatMessage("assistant", "", (call,)))
        elif kind == "function_call_output":
            call_id = _string(item, "call_id", where)
            out.append(ChatMessage("tool", _text(item.get("output"), where + ".output"),
                                   tool_call_id=call_id, name=names.get(call_id)))
        elif kind == "reasoning":
            continue  # a client's echo of reasoning: this server writes none
        elif kind == "item_reference":
            raise RequestError(f"{where}: {NO_STORE}", param="input")
        else:
            raise RequestError(f"{where}.type: {str(kind)[:40]!r} is not served (messages, "
                               "function_call and function_call_output are)", param="input")
    return out


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise RequestError(f"{where}.{key}: expected a string", param="input")
    return value


def _text(content: object, where: str) -> str:
    """A message's content (a string or text parts) as its text; other parts are refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(f"{where}: expected a string or an array of parts", param="input")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        key = TEXT_PARTS.get(kind) if isinstance(kind, str) else None
        if key is None or not isinstance(part.get(key), str):  # type: ignore[union-attr]
            raise RequestError(f"{where}[{j}]: only text parts are served (input_text, "
                               f"output_text), not {str(kind)[:40]!r}", param="input")
        texts.append(part[key])  # type: ignore[index]
    return "".join(texts)


# ---- responses


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage(finish: Finish) -> dict[str, Any]:
    return {"input_tokens": finish.prompt_tokens,
            "input_tokens_details": {"cached_tokens": finish.cached_tokens},
            "output_tokens": finish.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": finish.total_tokens, **knowledge_usage(finish)}


def skeleton(body: ResponsesRequest, model: str) -> dict[str, Any]:
    """The response object before its output: what the request asked, echoed."""
    tools = [{"type": "function", "name": t["name"], "description": t.get("description"),
              "parameters": t.get("parameters"), "strict": bool(t.get("strict"))}
             for t in body.tools or []]
    fmt = body.text.format.model_dump(by_alias=True, exclude_none=True) \
        if body.text and body.text.format else {"type": "text"}
    return {"id": _id("resp"), "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "error": None, "incomplete_details": None,
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
            "model": model, "output": [], "parallel_tool_calls": body.parallel_tool_calls
            is not False, "previous_response_id": None, "reasoning": {"effort": None,
                                                                      "summary": None},
            "store": False, "temperature": body.temperature, "text": {"format": fmt},
            "tool_choice": body.tool_choice or "auto", "tools": tools, "top_p": body.top_p,
            "truncation": "disabled", "usage": None, "user": None,
            "metadata": body.metadata or {}}


class ResponseEvents:
    """One response's stream: `of(events)` turns the engine's events into the typed events,
    numbered; `error(message)` is the event an error after the first one becomes."""

    def __init__(self, response: dict[str, Any]):
        self.response = response
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # the items so far, the open one last
        self.open: str | None = None  # "message" or "function_call" while one is open

    def error(self, message: str) -> dict[str, Any]:
        return self._event("error", code="server_error", message=message, param=None)

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "sequence_number": self.seq - 1, **fields}

    def _snapshot(self, status: str) -> dict[str, Any]:
        return self.response | {"status": status, "output": list(self.output)}

    def of(self, events: Iterable[Event]) -> Iterator[dict[str, Any]]:
        stream = iter(events)
        first = next(stream, None)  # before anything goes out: a refusal stays a 4xx
        if isinstance(first, Sources):  # a knowledge bundle's passages, as chat's `sources`
            self.response = self.response | {"sources": sources_json(first)}
        elif first is not None:
            stream = itertools.chain([first], stream)
        yield self._event("response.created", response=self._snapshot("in_progress"))
        yield self._event("response.in_progress", response=self._snapshot("in_progress"))
        for event in stream:
            if isinstance(event, Finish):
                yield from self._finish(event)
                return
            if isinstance(event, str):
                if self.open != "message":
                    yield from self._close()
                    yield from self._open_message()
                self.output[-1]["content"][0]["text"] += event
                yield self._event("response.output_text.delta", **self._at(), delta=event,
                                  logprobs=[])
            elif isinstance(event, CallStart):
                yield from self._close()
                yield from self._open_call(event)
            elif isinstance(event, CallArguments):
                self.output[-1]["arguments"] += event.fragment
                yield self._event("response.function_call_arguments.delta", **self._at(False),
                                  delta=event.fragment)

    def _at(self, part: bool = True) -> dict[str, Any]:
        where = {"item_id": self.output[-1]["id"], "output_index": len(self.output) - 1}
        return where | {"content_index": 0} if part else where

    def _open_message(self) -> Iterator[dict[str, Any]]:
        self.open = "message"
        self.output.append({"id": _id("msg"), "type": "message", "status": "in_progress",
                            "role": "assistant", "content": []})
        yield self._event("response.output_item.added", output_index=len(self.output) - 1,
                          item=_copy(self.output[-1]))
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        self.output[-1]["content"].append(part)
        yield self._event("response.content_part.added", **self._at(), part=dict(part))

    def _open_call(self, start: CallStart) -> Iterator[dict[str, Any]]:
        self.open = "function_call"
        self.output.append({"id": _id("fc"), "type": "function_call", "status": "in_progress",
                            "call_id": start.id, "name": start.name, "arguments": ""})
        yield self._event("response.output_item.added", output_index=len(self.output) - 1,
                          item=dict(self.output[-1]))

    def _close(self, status: str = "completed") -> Iterator[dict[str, Any]]:
        """Ends the open item with its `done` events."""
        if self.open is None:
            return
        item = self.output[-1]
        item["status"] = status
        if self.open == "message":
            part = item["content"][0]
            yield self._event("response.output_text.done", **self._at(), text=part["text"],
                              logprobs=[])
            yield self._event("response.content_part.done", **self._at(), part=dict(part))
        else:
            item["arguments"] = item["arguments"] or "{}"
            yield self._event("response.function_call_arguments.done", **self._at(False),
                              name=item["name"], arguments=item["arguments"])
        self.open = None
        yield self._event("response.output_item.done", output_index=len(self.output) - 1,
                          item=_copy(item))

    def _finish(self, finish: Finish) -> Iterator[dict[str, Any]]:
        cut = finish.reason == "length"
        if not self.output:  # an empty answer is still one (empty) message, as OpenAI's
            yield from self._open_message()
        yield from self._close("incomplete" if cut else "completed")
        final = self._snapshot("incomplete" if cut else "completed") | {
            "usage": usage(finish), "incomplete_details":
            {"reason": "max_output_tokens"} if cut else None}
        yield self._event("response.incomplete" if cut else "response.completed",
                          response=final)


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    """An item as it is now (its content list copied: the stream goes on filling it)."""
    return item | {"content": [dict(p) for p in item["content"]]} if "content" in item \
        else dict(item)


def whole(events: Iterable[Event], response: dict[str, Any]) -> dict[str, Any]:
    """A unary answer: the final response object of the stream it would have been."""
    return collections.deque(ResponseEvents(response).of(events), maxlen=1)[0]["response"]


# ---- routes


def add_routes(app: FastAPI, state: State) -> None:
    model_id = state.manifest.model_id

    @app.post("/v1/responses")
    async def responses(http: HTTPRequest, body: ResponsesRequest) -> Response:
        body.stateless()
        request = state.defaults.request(messages=body.messages(), **body.fields())
        engine = state.ready_engine()
        response = skeleton(body, model_id)

        async def respond() -> Response:
            if not body.stream:
                return JSONResponse(await state.worker.call(
                    lambda: whole(engine.generate(request), response), cancel=request.cancel))
            events = ResponseEvents(response)
            return await typed_sse(state.worker.stream(
                lambda: events.of(engine.generate(request)), request.cancel), events.error)

        return await answered(http, request.cancel, respond)

    @app.get("/v1/responses/{response_id}")
    async def stored(response_id: str) -> Response:
        raise NotStored(f"{response_id[:64]}: {NO_STORE}")


class NotStored(RequestError):
    status = 404
    type = "not_found_error"
