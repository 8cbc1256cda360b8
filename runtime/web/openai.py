"""OpenAI's dialect: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings."""

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

from runtime.generation import (
    ChatMessage,
    Completion,
    Event,
    Finish,
    GenerationRequest,
    Sources,
    collect,
)
from runtime.settings import MAX_TOKENS
from runtime.state import State
from runtime.web.knowledge import knowledge_usage, sources_json
from runtime.web.schemas import Request, SamplingFields
from runtime.web.streaming import sse

# ---- requests


class ContentPart(Request):
    type: Literal["text"]
    text: str


class Message(Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def chat_message(self) -> ChatMessage:
        text = (self.content if not isinstance(self.content, list)
                else "".join(part.text for part in self.content))
        return ChatMessage("system" if self.role == "developer" else self.role, text or "")


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
    knowledge: bool = True  # false: answer without retrieving from the bundle's documents

    def common(self) -> dict[str, Any]:
        return super().common() | {"max_tokens": self.max_completion_tokens or self.max_tokens,
                                   "knowledge": self.knowledge}


class CompletionRequest(Generation):
    prompt: str | list[str] | list[int]

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


def chat_completion(results: list[Completion], model: str) -> dict[str, Any]:
    answer = _envelope("chatcmpl", "chat.completion", model) | {
        "choices": [{"index": i, "message": {"role": "assistant", "content": r.text},
                     "logprobs": None, "finish_reason": r.finish.reason}
                    for i, r in enumerate(results)],
        "usage": total_usage(results),
    }
    sources = results[0].sources  # the same passages for every choice: one retrieval
    return answer if sources is None else answer | {"sources": sources_json(sources)}


def chat_chunks(events: Iterable[Event], model: str,
                include_usage: bool = False) -> Iterator[dict[str, Any]]:
    base = _envelope("chatcmpl", "chat.completion.chunk", model)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": finish}]}

    stream: Iterator[Event] = iter(events)
    first = next(stream, None)  # a knowledge bundle's Sources ride on the first chunk
    head = chunk({"role": "assistant", "content": ""})
    if isinstance(first, Sources):
        head["sources"] = sources_json(first)
    elif first is not None:
        stream = itertools.chain([first], stream)
    yield head
    for event in stream:
        if isinstance(event, Sources):
            continue
        if isinstance(event, Finish):
            yield chunk({}, event.reason)
            if include_usage:
                yield base | {"choices": [], "usage": usage(event)}
            return
        yield chunk({"content": event})


def text_completion(results: list[Completion], model: str) -> dict[str, Any]:
    return _envelope("cmpl", "text_completion", model) | {
        "choices": [{"index": i, "text": r.text, "logprobs": None,
                     "finish_reason": r.finish.reason} for i, r in enumerate(results)],
        "usage": total_usage(results),
    }


def text_chunks(events: Iterable[Event], model: str,
                include_usage: bool = False) -> Iterator[dict[str, Any]]:
    base = _envelope("cmpl", "text_completion", model)
    for event in events:
        if isinstance(event, Sources):  # a prompt is never grounded: only chats retrieve
            continue
        finish = event if isinstance(event, Finish) else None
        yield base | {"choices": [{"index": 0, "text": "" if finish else event,
                                   "logprobs": None,
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

    async def generation(body: Generation, request: GenerationRequest,
                         whole: Callable[[list[Completion], str], dict[str, Any]],
                         chunks: Callable[..., Iterator[dict[str, Any]]]) -> Response:
        """One answer object (n choices), or its SSE chunks: shared by chat and completions."""
        engine = state.ready_engine()
        if not body.stream:
            return JSONResponse(await state.worker.call(lambda: whole(
                [collect(engine.generate(r)) for r in choices(request, body.n)], model_id)))
        return await sse(state.worker.stream(
            lambda: chunks(engine.generate(request), model_id, body.include_usage)))

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest) -> Response:
        request = state.defaults.request(
            messages=[m.chat_message() for m in body.messages], **body.common())
        return await generation(body, request, chat_completion, chat_chunks)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Response:
        request = state.defaults.request(prompt=body.prompt, **body.common())  # type: ignore
        return await generation(body, request, text_completion, text_chunks)

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
