"""Anthropic's dialect: POST /v1/messages and /v1/messages/count_tokens, as the `anthropic` SDK
and Claude Code (ANTHROPIC_BASE_URL pointed here) speak them. Errors come in Anthropic's shape
(runtime/web/errors.py); the key may come as `x-api-key` (runtime/web/guard.py).

Differences from Anthropic's API, on purpose or by necessity:
- Images, documents and server tools (web search, code execution, ...) are refused with a 400
  naming them. `thinking`, `metadata`, `service_tier`, `cache_control` and
  `output_config.effort` are accepted and ignored; `max_tokens` may be left out (the bundle's
  default). `output_config.format` (structured output) holds the answer to its JSON schema.
- temperature, top_p and top_k are read (the SDK now sends them only through `extra_body`).
- A last assistant message is rendered as a finished turn, not continued (no prefill).
- `usage.cache_read_input_tokens` counts the prompt tokens whose KV entries were reused;
  nothing is written to a cache on request (cache_creation_input_tokens is always 0).
- A streamed answer's input tokens are known once its prompt is read: message_start says 0,
  message_delta's usage has the count.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from runtime.chat.tools import ToolCall, tool_choice_from_openai, tools_from_openai
from runtime.errors import RequestError
from runtime.generation import (
    CallArguments,
    CallStart,
    ChatMessage,
    Completion,
    Event,
    Finish,
    GenerationRequest,
    collect,
)
from runtime.settings import MAX_TOKENS
from runtime.state import State
from runtime.web.abandon import answered
from runtime.web.errors import error_payload
from runtime.web.schemas import MAX_STOPS, Request, bounded
from runtime.web.streaming import typed_sse

# ---- requests


class TextBlock(Request):
    type: Literal["text"]
    text: str


class ImageBlock(Request):  # refused: the model reads text only
    type: Literal["image", "document", "search_result"]


class ThinkingBlock(Request):  # a past answer's reasoning: not shown to the model again
    type: Literal["thinking", "redacted_thinking"]


class ToolUseBlock(Request):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(Request):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] = ""
    is_error: bool = False


Block = Annotated[TextBlock | ImageBlock | ThinkingBlock | ToolUseBlock | ToolResultBlock,
                  Field(discriminator="type")]


class Message(Request):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ToolDefinition(Request):
    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    type: str | None = None  # "custom", or a server tool's versioned name


class ToolChoice(Request):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class OutputFormat(Request):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(Request):
    format: OutputFormat | None = None  # structured output; `effort` is accepted and ignored


class MessagesRequest(Request):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    stop_sequences: list[str] | None = Field(None, max_length=MAX_STOPS)
    temperature: float | None = bounded("temp")
    top_p: float | None = bounded("top_p")
    top_k: int | None = bounded("top_k")
    stream: bool = False
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    output_config: OutputConfig | None = None

    def chat(self) -> list[ChatMessage]:
        """The conversation as chat messages: a user turn's tool results become tool
        messages (before its text, as they answer the calls just made)."""
        system = self.system if isinstance(self.system, str | None) else \
            "\n".join(block.text for block in self.system)
        out = [ChatMessage("system", system)] if system else []
        names: dict[str, str] = {}  # a call's id: its tool, for the result that answers it
        for i, message in enumerate(self.messages):
            text, calls, results = _turn(message, f"messages[{i}]", names)
            if message.role == "assistant":
                out.append(ChatMessage("assistant", text, tool_calls=tuple(calls)))
                continue
            out += results
            if text or not results:
                out.append(ChatMessage("user", text))
        return out

    def tool_fields(self) -> dict[str, Any]:
        """The tools keywords of `Defaults.request`, checked as OpenAI's are (names, schemas)."""
        for i, tool in enumerate(self.tools or ()):
            if tool.type not in (None, "custom"):
                raise RequestError(f"tools[{i}]: the server tool {tool.type!r} is not served; "
                                   "only custom tools (name, description, input_schema)",
                                   param="tools")
        tools = tools_from_openai([{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.input_schema}}
            for t in self.tools or ()])
        choice = self.tool_choice
        if choice is None:
            return {"tools": tools, "tool_choice": tool_choice_from_openai(None, tools)}
        if choice.type == "tool" and not choice.name:
            raise RequestError("tool_choice.name: required with type \"tool\"",
                               param="tool_choice")
        given: str | dict[str, Any] = {"auto": "auto", "any": "required", "none": "none"}.get(
            choice.type) or {"function": {"name": choice.name}}
        return {"tools": tools, "tool_choice": tool_choice_from_openai(given, tools),
                "parallel_tool_calls": not choice.disable_parallel_tool_use}

    def keywords(self) -> dict[str, Any]:
        output = self.output_config.format if self.output_config else None
        return {"max_tokens": self.max_tokens, "stop": self.stop_sequences,
                "json_schema": output.schema_ if output else None,
                "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}


def _turn(message: Message, where: str, names: dict[str, str]
          ) -> tuple[str, list[ToolCall], list[ChatMessage]]:
    """A message's text, its calls and its tool results; records each call's tool in
    `names`."""
    blocks = message.content if isinstance(message.content, list) else \
        [TextBlock(type="text", text=message.content)]
    texts, calls, results = [], [], []
    for j, block in enumerate(blocks):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ImageBlock):
            _refuse(block.type, f"{where}.content[{j}]")
        elif isinstance(block, ToolUseBlock):
            names[block.id] = block.name
            calls.append(ToolCall(block.id, block.name, _json(block.input)))
        elif isinstance(block, ToolResultBlock):
            results.append(_result(block, names.get(block.tool_use_id), f"{where}.content[{j}]"))
    return "\n".join(texts), calls, results


def _refuse(kind: str, where: str) -> None:
    raise RequestError(f"{where}: this model reads text only; {kind} blocks are not served",
                       param="messages")


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def _result(block: ToolResultBlock, name: str | None, where: str) -> ChatMessage:
    parts = [block.content] if isinstance(block.content, str) else []
    for k, part in enumerate(block.content if isinstance(block.content, list) else ()):
        if isinstance(part, ImageBlock):
            _refuse(part.type, f"{where}.content[{k}]")
        else:
            parts.append(part.text)
    text = "\n".join(parts)
    return ChatMessage("tool", f"Error: {text}" if block.is_error else text,
                       tool_call_id=block.tool_use_id, name=name)


# ---- responses

STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use"}


def stop_fields(finish: Finish, stops: Iterable[str]) -> dict[str, Any]:
    """stop_reason and stop_sequence: "stop_sequence" only for one of the caller's (a stop the
    template adds ends the turn)."""
    if finish.reason == "stop" and finish.stop_sequence in set(stops):
        return {"stop_reason": "stop_sequence", "stop_sequence": finish.stop_sequence}
    return {"stop_reason": STOP_REASONS.get(finish.reason, "end_turn"), "stop_sequence": None}


def usage(finish: Finish) -> dict[str, Any]:
    """Anthropic counts reused prompt tokens apart from input_tokens."""
    return {"input_tokens": finish.prompt_tokens - finish.cached_tokens,
            "output_tokens": finish.completion_tokens,
            "cache_read_input_tokens": finish.cached_tokens, "cache_creation_input_tokens": 0}


def _envelope(model: str) -> dict[str, Any]:
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": model}


def _tool_use(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name,
            "input": call.arguments_object()}


def message(result: Completion, model: str, stops: Iterable[str]) -> dict[str, Any]:
    """The whole answer: its text (left out when empty beside calls), then its calls."""
    content = [{"type": "text", "text": result.text}] if result.text or not result.tool_calls \
        else []
    content += [_tool_use(call) for call in result.tool_calls]
    return _envelope(model) | {"content": content, **stop_fields(result.finish, stops),
                               "usage": usage(result.finish)}


def message_events(events: Iterable[Event], model: str,
                   stops: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Anthropic's stream: message_start, a ping, each content block (started, its deltas,
    stopped), message_delta with the stop reason and usage, message_stop. The first event is
    read before anything is sent, so a prompt that cannot be served is still a 4xx."""
    stream = iter(events)
    first = next(stream)
    yield {"type": "message_start", "message": _envelope(model) | {
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}}}
    yield {"type": "ping"}
    index, open_block = -1, ""  # the block being written: "text", "tool_use" or none

    def start(block: dict[str, Any]) -> Iterator[dict[str, Any]]:
        nonlocal index, open_block
        if open_block:
            yield {"type": "content_block_stop", "index": index}
        index, open_block = index + 1, block["type"]
        yield {"type": "content_block_start", "index": index, "content_block": block}

    for event in itertools.chain([first], stream):
        if isinstance(event, Finish):
            if open_block:
                yield {"type": "content_block_stop", "index": index}
            yield {"type": "message_delta", "delta": stop_fields(event, stops),
                   "usage": usage(event)}
            yield {"type": "message_stop"}
            return
        if isinstance(event, CallStart):
            yield from start({"type": "tool_use", "id": event.id, "name": event.name,
                              "input": {}})
        elif isinstance(event, CallArguments):
            yield {"type": "content_block_delta", "index": index,
                   "delta": {"type": "input_json_delta", "partial_json": event.fragment}}
        elif isinstance(event, str) and event:
            if open_block != "text":
                yield from start({"type": "text", "text": ""})
            yield {"type": "content_block_delta", "index": index,
                   "delta": {"type": "text_delta", "text": event}}
        # Sources (a knowledge bundle's): Anthropic's shape has no place for them


# ---- routes


def add_routes(app: FastAPI, state: State) -> None:
    model_id = state.manifest.model_id

    def request_of(body: MessagesRequest) -> GenerationRequest:
        return state.defaults.request(messages=body.chat(), **body.keywords(),
                                      **body.tool_fields())

    @app.post("/v1/messages")
    async def messages(body: MessagesRequest, http: HTTPRequest) -> Response:
        request = request_of(body)
        engine = state.ready_engine()
        stops = request.stop

        async def respond() -> Response:
            if not body.stream:
                return JSONResponse(await state.worker.call(
                    lambda: message(collect(engine.generate(request)), model_id, stops),
                    cancel=request.cancel))
            return await typed_sse(state.worker.stream(
                lambda: message_events(engine.generate(request), model_id, stops),
                request.cancel), lambda text: error_payload(text, "server_error", path=path))

        path = http.url.path
        return await answered(http, request.cancel, respond)

    @app.post("/v1/messages/count_tokens")
    async def count_tokens(body: MessagesRequest) -> dict[str, Any]:
        request = request_of(body)
        engine = state.ready_engine()
        # the tokenizer only reads: counting need not wait for the generations in the queue
        return {"input_tokens": await asyncio.to_thread(engine.prompt_tokens, request)}

