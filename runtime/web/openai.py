"""OpenAI's dialect: /v1/models, /v1/chat/completions, /v1/completions (with `suffix`:
fill-in-the-middle), /v1/embeddings."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import Field, field_validator, model_validator
from starlette.requests import Request as HttpRequest

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
    Infill,
    Sources,
    TopLogprob,
    collect,
)
from runtime.settings import MAX_TOKENS
from runtime.state import State
from runtime.web.abandon import answered
from runtime.web.knowledge import knowledge_usage, sources_json
from runtime.web.schemas import Request, SamplingFields
from runtime.web.streaming import sse

MAX_OPENAI_STOPS = 4  # OpenAI refuses more; llama.cpp's native route takes up to MAX_STOPS
MAX_TOP_LOGPROBS = 20  # OpenAI's limit

# ---- requests


class ContentPart(Request):
    type: Literal["text"]
    text: str


class FunctionCall(Request):
    name: str
    arguments: str = "{}"  # JSON text, as OpenAI sends it


class MessageToolCall(Request):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[MessageToolCall] | None = None  # an assistant's past calls
    tool_call_id: str | None = None  # a tool result: the call it answers
    name: str | None = None

    def chat_message(self) -> ChatMessage:
        text = (self.content if not isinstance(self.content, list)
                else "".join(part.text for part in self.content))
        calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments)
                      for c in self.tool_calls or ())
        return ChatMessage("system" if self.role == "developer" else self.role, text or "",
                           tool_calls=calls if self.role == "assistant" else (),
                           tool_call_id=self.tool_call_id if self.role == "tool" else None,
                           name=self.name if self.role == "tool" else None)


class StreamOptions(Request):
    include_usage: bool = False


class ResponseFormat(Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None  # OpenAI: {"name", "schema", "strict"}
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # llama.cpp's shorthand

    @model_validator(mode="after")
    def _schema_is_an_object(self) -> ResponseFormat:
        if self.type == "json_schema" and not isinstance(self.constraint(), dict):
            raise ValueError("json_schema.schema must be an object")
        return self

    def constraint(self) -> dict[str, Any] | None:
        """The JSON schema to constrain output to; {} for any object, None for free text."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return self.schema_ or {}
        schema = (self.json_schema or {}).get("schema", self.json_schema) or self.schema_
        return schema if isinstance(schema, dict) else None


class Generation(SamplingFields):
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    n: int = Field(1, ge=1, le=8)
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _one_stream(self) -> Generation:
        if self.stream and self.n > 1:
            raise ValueError("n > 1 is only supported without stream")
        return self

    @field_validator("stop")
    @classmethod
    def _openai_stops(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_OPENAI_STOPS:
            raise ValueError(f"at most {MAX_OPENAI_STOPS} stop sequences (OpenAI's limit)")
        return value

    def common(self) -> dict[str, Any]:
        """Keywords of `Defaults.request` shared by chat and text completions."""
        return {"max_tokens": self.max_tokens, "stop": self.stop,
                "json_schema": self.response_format.constraint() if self.response_format else None,
                **self.sampling()}

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(Generation):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    tools: list[dict[str, Any]] | None = None  # checked by tools_from_openai, with its paths
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    knowledge: bool = True  # false: answer without retrieving from the bundle's documents

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def common(self) -> dict[str, Any]:
        return super().common() | {"max_tokens": self.max_completion_tokens or self.max_tokens,
                                   "logprobs": (self.top_logprobs or 0) if self.logprobs
                                   else None, "knowledge": self.knowledge}

    def tool_fields(self) -> dict[str, Any]:
        """The tools keywords of `Defaults.request`; a malformed tool is a 400 naming it."""
        tools = tools_from_openai(self.tools)
        return {"tools": tools, "tool_choice": tool_choice_from_openai(self.tool_choice, tools),
                "parallel_tool_calls": self.parallel_tool_calls}


class CompletionRequest(Generation):
    prompt: str | list[str] | list[int]
    suffix: str | None = None  # fill-in-the-middle: the text after the one to write
    logprobs: int | None = Field(None, ge=0, le=5)  # the legacy API: how many alternatives

    def common(self) -> dict[str, Any]:
        return super().common() | {"logprobs": self.logprobs}

    def text(self) -> dict[str, Any]:
        """`prompt`, or with a suffix `infill` (the prompt is then the prefix), for
        `Defaults.request`."""
        if not self.suffix:
            return {"prompt": self.prompt}
        if not isinstance(self.prompt, str):
            raise RequestError("suffix: fill-in-the-middle needs the prompt as text, not "
                               "token ids", param="suffix")
        return {"infill": Infill(self.prompt, self.suffix)}

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and value and isinstance(value[0], str):
            if len(value) != 1:
                raise ValueError("send one prompt per request")
            return value[0]
        if value == "" or value == []:
            raise ValueError("prompt is empty")
        return value


class EmbeddingRequest(Request):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, list) and not 1 <= len(value) <= 256:
            raise ValueError("input must hold 1 to 256 items")
        return value

    def inputs(self) -> list[str | list[int]]:
        """One entry per vector to return: a text or a list of token ids."""
        if isinstance(self.input, str) or isinstance(self.input[0], int):
            return [self.input]  # type: ignore[list-item]
        return list(self.input)  # type: ignore[arg-type]


# ---- responses


def usage(finish: Finish) -> dict[str, Any]:
    return {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens,
            "total_tokens": finish.total_tokens,
            "prompt_tokens_details": {"cached_tokens": finish.cached_tokens},
            **knowledge_usage(finish)}


def total_usage(results: list[Completion]) -> dict[str, Any]:
    """Usage of n choices: the prompt counted once, as OpenAI does."""
    first = results[0].finish
    return usage(dataclasses.replace(
        first, completion_tokens=sum(r.finish.completion_tokens for r in results)))


def _envelope(id_prefix: str, kind: str, model: str) -> dict[str, Any]:
    """The fields every OpenAI completion object and chunk starts with."""
    return {"id": f"{id_prefix}-{uuid.uuid4().hex}", "object": kind,
            "created": int(time.time()), "model": model}


def chat_message(result: Completion) -> dict[str, Any]:
    """The assistant's message; with calls, content is null unless the model also wrote text."""
    if not result.tool_calls:
        return {"role": "assistant", "content": result.text}
    return {"role": "assistant", "content": result.text or None,
            "tool_calls": [call.to_openai() for call in result.tool_calls]}


def _top(entry: TopLogprob) -> dict[str, Any]:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(entry.piece)}


def chat_logprobs(finish: Finish) -> dict[str, Any] | None:
    """OpenAI's chat `logprobs`: each token with its alternatives; None when not asked."""
    if finish.logprobs is None:
        return None
    return {"content": [_top(t) | {"top_logprobs": [_top(x) for x in t.top]}
                        for t in finish.logprobs], "refusal": None}


def text_logprobs(finish: Finish, offset: int = 0) -> dict[str, Any] | None:
    """The legacy completions `logprobs`: parallel lists, alternatives as {token: logprob}."""
    if finish.logprobs is None:
        return None
    offsets = []
    for t in finish.logprobs:
        offsets.append(offset)
        offset += len(t.token)
    return {"tokens": [t.token for t in finish.logprobs],
            "token_logprobs": [t.logprob for t in finish.logprobs],
            "top_logprobs": [{x.token: x.logprob for x in t.top} for t in finish.logprobs],
            "text_offset": offsets}


def chat_completion(results: list[Completion], model: str) -> dict[str, Any]:
    answer = _envelope("chatcmpl", "chat.completion", model) | {
        "choices": [{"index": i, "message": chat_message(r),
                     "logprobs": chat_logprobs(r.finish), "finish_reason": r.finish.reason}
                    for i, r in enumerate(results)],
        "usage": total_usage(results),
    }
    sources = results[0].sources  # the same passages for every choice: one retrieval
    return answer if sources is None else answer | {"sources": sources_json(sources)}


def chat_delta(event: CallStart | CallArguments | str) -> dict[str, Any]:
    """One event as OpenAI streams it: a call's index, id, type and name once, then only
    fragments of its arguments (clients concatenate every string field they receive)."""
    if isinstance(event, CallStart):
        return {"tool_calls": [{"index": event.index, "id": event.id, "type": "function",
                                "function": {"name": event.name, "arguments": ""}}]}
    if isinstance(event, CallArguments):
        return {"tool_calls": [{"index": event.index,
                                "function": {"arguments": event.fragment}}]}
    return {"content": event}


def chat_chunks(events: Iterable[Event], model: str, include_usage: bool = False,
                tools: bool = False) -> Iterator[dict[str, Any]]:
    """With tools the role goes out with the first event, as OpenAI's does: content null when
    the answer opens with a call. Without, at once, so the stream starts before the first
    token."""
    base = _envelope("chatcmpl", "chat.completion.chunk", model)

    extra: dict[str, Any] = {}  # what the first chunk carries besides (the sources)

    def chunk(delta: dict[str, Any], finish: Finish | None = None) -> dict[str, Any]:
        nonlocal extra
        out = base | {"choices": [{
            "index": 0, "delta": delta, "logprobs": finish and chat_logprobs(finish),
            "finish_reason": finish and finish.reason}]} | extra
        extra = {}
        return out

    stream: Iterator[Event] = iter(events)
    first = next(stream, None)  # a knowledge bundle's Sources ride on the first chunk
    if isinstance(first, Sources):
        extra = {"sources": sources_json(first)}
    elif first is not None:
        stream = itertools.chain([first], stream)
    role: dict[str, Any] = {"role": "assistant", "content": ""}
    if not tools:
        yield chunk(role)
        role = {}
    for event in stream:
        if isinstance(event, Sources):
            continue
        if isinstance(event, Finish):
            if role:
                yield chunk(role)
            yield chunk({}, event)  # with the answer's logprobs, when asked
            if include_usage:
                yield base | {"choices": [], "usage": usage(event)}
            return
        delta = chat_delta(event)
        if role:
            delta = role | ({"content": None} if "tool_calls" in delta else {}) | delta
            role = {}
        yield chunk(delta)


def text_completion(results: list[Completion], model: str) -> dict[str, Any]:
    return _envelope("cmpl", "text_completion", model) | {
        "choices": [{"index": i, "text": r.text, "logprobs": text_logprobs(r.finish),
                     "finish_reason": r.finish.reason} for i, r in enumerate(results)],
        "usage": total_usage(results),
    }


def text_chunks(events: Iterable[Event], model: str,
                include_usage: bool = False) -> Iterator[dict[str, Any]]:
    base = _envelope("cmpl", "text_completion", model)
    for event in events:
        if isinstance(event, Sources | CallStart | CallArguments):
            continue  # a prompt is never grounded (only chats retrieve), and offers no tools
        finish = event if isinstance(event, Finish) else None
        yield base | {"choices": [{"index": 0, "text": event if isinstance(event, str) else "",
                                   "logprobs": finish and text_logprobs(finish),
                                   "finish_reason": finish.reason if finish else None}]}
        if finish:
            if include_usage:
                yield base | {"choices": [], "usage": usage(finish)}
            return


def choices(request: GenerationRequest, n: int) -> list[GenerationRequest]:
    """n requests for n choices; a given seed becomes seed, seed+1, ... so they differ."""
    seed = request.sampling.seed
    if seed is None:
        return [request] * n
    return [dataclasses.replace(request, sampling=dataclasses.replace(request.sampling,
                                                                       seed=seed + i))
            for i in range(n)]


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


# ---- routes


def add_routes(app: FastAPI, state: State) -> None:
    created = int(time.time())
    model_id = state.manifest.model_id

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": model_id, "object": "model", "created": created, "owned_by": "llamabundle"}]}

    async def generation(http: HttpRequest, body: Generation, request: GenerationRequest,
                         whole: Callable[[list[Completion], str], dict[str, Any]],
                         chunks: Callable[..., Iterator[dict[str, Any]]]) -> Response:
        """One answer object (n choices), or its SSE chunks: shared by chat and completions."""
        engine = state.ready_engine()

        async def respond() -> Response:
            if not body.stream:
                return JSONResponse(await state.worker.call(lambda: whole(
                    [collect(engine.generate(r)) for r in choices(request, body.n)],
                    model_id), cancel=request.cancel))
            extra = {"tools": True} if request.calls_tools else {}
            return await sse(state.worker.stream(
                lambda: chunks(engine.generate(request), model_id, body.include_usage,
                               **extra), request.cancel))

        return await answered(http, request.cancel, respond)

    @app.post("/v1/chat/completions")
    async def chat(http: HttpRequest, body: ChatRequest) -> Response:
        request = state.defaults.request(
            messages=[m.chat_message() for m in body.messages], **body.common(),
            **body.tool_fields())
        return await generation(http, body, request, chat_completion, chat_chunks)

    @app.post("/v1/completions")
    async def completions(http: HttpRequest, body: CompletionRequest) -> Response:
        request = state.defaults.request(**body.text(), **body.common())
        return await generation(http, body, request, text_completion, text_chunks)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Response:
        engine = state.ready_engine()
        results = await state.worker.call(lambda: [engine.embed(i) for i in body.inputs()])
        tokens = sum(r.tokens for r in results)
        return JSONResponse({
            "object": "list", "model": model_id,
            "data": [{"object": "embedding", "index": i,
                      "embedding": _encode(r.vector, body.encoding_format)}
                     for i, r in enumerate(results)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
