"""Ollama's dialect: /api/chat, /api/generate, /api/embed, /api/embeddings, and what clients read
about the model (/api/tags, /api/show, /api/ps, /api/version; ollama_info.py).

Differences from Ollama, on purpose or by necessity:
- `options.num_ctx` is accepted and ignored: the context is fixed at launch (`--ctx-size`), and
  /api/show reports it so that clients size their prompts to it.
- `template` (a Go template) and `context` are accepted and ignored: the model's own Jinja chat
  template renders every chat. `raw: true` sends the prompt as is.
- `keep_alive` and `think` are accepted and ignored: the model stays loaded while the server
  runs, and no thinking is split from the answer.
- Images and `suffix` (fill-in-the-middle) are refused with a 400 naming them.
- `tools`: the model's own template renders them (or the generic instruction, for templates
  that know none); calls come back whole, arguments as objects, done_reason "stop". Ollama has
  no tool_choice: the model decides (auto).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field, field_validator

from runtime import __version__
from runtime.chat.tools import ToolCall, tools_from_openai
from runtime.errors import RequestError
from runtime.generation import (
    CallArguments,
    CallStart,
    ChatMessage,
    Event,
    Finish,
    GenerationRequest,
    collect,
)
from runtime.settings import MAX_TOKENS
from runtime.state import State
from runtime.web.ollama_info import OLLAMA_VERSION, ModelInfo, rfc3339
from runtime.web.schemas import MAX_STOPS, Request, bounded
from runtime.web.streaming import ndjson

LOAD_POLL_S = 0.05

# ---- requests


class Options(Request):
    """Ollama's `options`. Unknown keys are ignored, as Ollama does; a known key with a wrong
    type is a 400 (strict: "0.5" is not a number). Those not mapped onto our sampling (load-time
    options, mirostat, ...) are only type-checked."""

    model_config = ConfigDict(extra="ignore", strict=True)

    num_predict: int | None = Field(default=None, ge=-2, le=MAX_TOKENS)  # <= 0: no limit, as Ollama
    temperature: float | None = bounded("temp")
    top_p: float | None = bounded("top_p")
    top_k: int | None = bounded("top_k")
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = bounded("repeat_penalty")
    repeat_last_n: int | None = Field(default=None, ge=-1, le=MAX_TOKENS)  # -1: the whole context
    seed: int | None = Field(default=None, ge=-(1 << 63), le=(1 << 64) - 1)  # < 0: a random one
    stop: str | list[str] | None = None
    num_ctx: int | None = Field(default=None, ge=0)  # the context is fixed at launch
    num_keep: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    num_thread: int | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    tfs_z: float | None = None
    typical_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    penalize_newline: bool | None = None
    numa: bool | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    vocab_only: bool | None = None
    logits_all: bool | None = None
    embedding_only: bool | None = None

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop sequences")
        return value

    def request_keywords(self, n_ctx: int) -> dict[str, Any]:
        """The keywords of `Defaults.request` (None: the bundle's default)."""
        penalty, last_n = self.repeat_penalty, self.repeat_last_n
        if last_n == 0:  # Ollama's "no penalty window": no penalty at all
            penalty, last_n = 1.0, None
        elif last_n == -1:
            last_n = n_ctx
        predict = self.num_predict
        return {"max_tokens": None if predict is None else (predict if predict > 0 else -1),
                "stop": self.stop, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "min_p": self.min_p, "repeat_penalty": penalty,
                "repeat_last_n": last_n,
                "seed": None if self.seed is None or self.seed < 0 else self.seed}


class Generation(Request):
    model: str | None = None
    stream: bool | None = None  # Ollama streams unless told not to
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: int | float | str | None = None
    think: bool | str | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("", "json"):
            raise ValueError('expected "json" or a JSON schema object')
        return value

    @property
    def unloads(self) -> bool:
        """keep_alive 0: Ollama unloads the model after this request."""
        return self.keep_alive in (0, "0", "0s", "0m")

    def keywords(self, n_ctx: int) -> dict[str, Any]:
        schema = {} if self.format == "json" else (self.format or None)
        options = self.options or Options()
        return options.request_keywords(n_ctx) | {"json_schema": schema}


def _no_images(images: list[str] | None, where: str) -> None:
    if images:
        raise RequestError(f"{where}: this model reads text only; send no images",
                           param="images")


class CalledFunction(Request):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)  # an object, not JSON text


class MessageToolCall(Request):
    id: str = ""  # Ollama sends none; results then pair with calls by order
    function: CalledFunction


class Message(Request):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[MessageToolCall] | None = None  # an assistant's past calls
    tool_name: str | None = None  # a tool result: which tool answered
    tool_call_id: str | None = None  # LangChain's ChatOllama sends it

    def chat_message(self) -> ChatMessage:
        calls = tuple(ToolCall(c.id, c.function.name, json.dumps(c.function.arguments))
                      for c in self.tool_calls or ())
        tool = self.role == "tool"
        return ChatMessage(self.role, self.content or "",
                           tool_calls=calls if self.role == "assistant" else (),
                           tool_call_id=self.tool_call_id if tool else None,
                           name=self.tool_name if tool else None)


class ChatRequest(Generation):
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None  # OpenAI's shape; checked by tools_from_openai

    def chat(self) -> list[ChatMessage]:
        for i, message in enumerate(self.messages or ()):
            _no_images(message.images, f"messages[{i}].images")
        return [m.chat_message() for m in self.messages or ()]

    def tool_fields(self) -> dict[str, Any]:
        """Ollama has no tool_choice: the model calls tools when it decides to (auto)."""
        return {"tools": tools_from_openai(self.tools or None)}


class GenerateRequest(Generation):
    prompt: str | None = None
    system: str | None = None
    suffix: str | None = None
    raw: bool = False
    images: list[str] | None = None
    template: str | None = None
    context: list[int] | None = None

    def generation(self) -> dict[str, Any]:
        """`prompt` or `messages` for `Defaults.request`."""
        _no_images(self.images, "images")
        if self.suffix:
            raise RequestError("suffix: fill-in-the-middle is not supported; send the whole "
                               "prompt in the model's FIM format with raw: true", param="suffix")
        if self.raw:
            return {"prompt": self.prompt}
        system = [ChatMessage("system", self.system)] if self.system else []
        return {"messages": [*system, ChatMessage("user", self.prompt or "")]}


class EmbedRequest(Request):
    model: str | None = None
    input: str | list[str] = Field(default_factory=list, max_length=256)
    truncate: bool = True
    dimensions: int | None = Field(default=None, ge=1)
    options: Options | None = None
    keep_alive: int | float | str | None = None

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class LegacyEmbeddingRequest(Request):
    model: str | None = None
    prompt: str = ""
    options: Options | None = None
    keep_alive: int | float | str | None = None


class ShowRequest(Request):
    model: str | None = None
    name: str | None = None  # the old spelling, still sent by Continue
    verbose: bool = False


# ---- responses


class Clock:
    """A request's timings in nanoseconds: total, and load (Ollama's load_duration includes
    waiting for the model; here that is the wait in the queue)."""

    def __init__(self) -> None:
        self.start = time.monotonic_ns()
        self.began = self.start

    def begin(self) -> None:
        """Called on the model thread when the request's turn comes."""
        self.began = time.monotonic_ns()

    def stats(self, finish: Finish) -> dict[str, Any]:
        # Ollama ends an answer that called tools with "stop": it has no "tool_calls" reason
        return {"done_reason": "length" if finish.reason == "length" else "stop",
                "total_duration": time.monotonic_ns() - self.start,
                "load_duration": self.began - self.start,
                "prompt_eval_count": finish.prompt_tokens,
                "prompt_eval_duration": finish.prompt_ns,
                "eval_count": finish.completion_tokens, "eval_duration": finish.generation_ns}


Shape = Callable[[str], dict[str, Any]]  # a piece of text as a chunk's own fields


def chat_shape(text: str) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": text}}


def generate_shape(text: str) -> dict[str, Any]:
    return {"response": text}


def ollama_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Whole calls, arguments as objects (the grammar made them JSON objects)."""
    out = []
    for i, call in enumerate(calls):
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {}
        out.append({"function": {"index": i, "name": call.name,
                                 "arguments": arguments if isinstance(arguments, dict) else {}}})
    return out


def chunks(events: Iterator[Event], shape: Shape, name: str,
           clock: Clock) -> Iterator[dict[str, Any]]:
    """Every chunk carries the model, the time and `done`; the last adds the stats. Tool calls
    are never sent in fragments: Ollama's clients read whole calls, so they go out together,
    complete, in one chunk before the last."""
    calls: list[ToolCall] = []
    for event in events:
        if isinstance(event, CallStart):
            calls.append(ToolCall(event.id, event.name, ""))
        elif isinstance(event, CallArguments):
            calls[event.index].arguments += event.fragment
        elif isinstance(event, Finish):
            if calls:
                message = chat_shape("")
                message["message"]["tool_calls"] = ollama_calls(calls)
                yield {"model": name, "created_at": rfc3339(), **message, "done": False}
            yield {"model": name, "created_at": rfc3339(), **shape(""), "done": True,
                   **clock.stats(event)}
            return
        else:
            yield {"model": name, "created_at": rfc3339(), **shape(event), "done": False}


def whole(events: Iterator[Event], shape: Shape, name: str, clock: Clock) -> dict[str, Any]:
    answer = collect(events)
    fields = shape(answer.text)
    if answer.tool_calls:
        fields["message"]["tool_calls"] = ollama_calls(list(answer.tool_calls))
    return {"model": name, "created_at": rfc3339(), **fields, "done": True,
            **clock.stats(answer.finish)}


def loaded(name: str, shape: Shape, unload: bool) -> dict[str, Any]:
    """Ollama's answer to a request with nothing to generate: load (or unload, with
    keep_alive 0) the model. Ours is always loaded and stays so."""
    return {"model": name, "created_at": rfc3339(), **shape(""), "done": True,
            "done_reason": "unload" if unload else "load"}


def _shorten(vector: list[float], dimensions: int | None) -> list[float]:
    """The first `dimensions` values, normalised again, as Ollama's `dimensions` does."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head)) or 1.0
    return [v / norm for v in head]


# ---- routes


def add_routes(app: FastAPI, state: State) -> None:
    info = ModelInfo(state)

    @app.api_route("/api/version", methods=["GET", "HEAD"])
    async def version() -> dict[str, Any]:
        return {"version": OLLAMA_VERSION, "llamabundle": __version__}

    @app.api_route("/api/tags", methods=["GET", "HEAD"])
    async def tags() -> dict[str, Any]:
        return {"models": [info.tag()]}

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        return {"models": info.running()}

    @app.post("/api/show")
    async def show(body: ShowRequest) -> dict[str, Any]:
        info.check(body.model or body.name)
        return info.show(tools=True)

    async def load(name: str, shape: Shape, unload: bool) -> Response:
        """Nothing to generate: Ollama's clients ask this to load the model, and wait for it.
        Loading always ends, loaded or failed (then ready_engine says why)."""
        while state.engine is None and state.load_error is None:
            await asyncio.sleep(LOAD_POLL_S)
        state.ready_engine()
        return JSONResponse(loaded(name, shape, unload))

    async def generation(body: Generation, request: GenerationRequest, name: str,
                         shape: Shape, clock: Clock) -> Response:
        engine = state.ready_engine()

        def events() -> Iterator[Event]:
            clock.begin()
            return engine.generate(request)

        if body.stream is False:
            return JSONResponse(await state.worker.call(
                lambda: whole(events(), shape, name, clock)))
        return await ndjson(state.worker.stream(lambda: chunks(events(), shape, name, clock)))

    @app.post("/api/chat")
    async def chat(body: ChatRequest) -> Response:
        clock, name = Clock(), info.check(body.model)
        messages = body.chat()
        if not messages:
            return await load(name, chat_shape, body.unloads)
        request = state.defaults.request(messages=messages, **body.keywords(info.n_ctx),
                                         **body.tool_fields())
        return await generation(body, request, name, chat_shape, clock)

    @app.post("/api/generate")
    async def generate(body: GenerateRequest) -> Response:
        clock, name = Clock(), info.check(body.model)
        if not body.prompt and not body.suffix:
            return await load(name, generate_shape, body.unloads)
        request = state.defaults.request(**body.generation(), **body.keywords(info.n_ctx))
        return await generation(body, request, name, generate_shape, clock)

    @app.post("/api/embed")
    async def embed(body: EmbedRequest) -> dict[str, Any]:
        clock, name = Clock(), info.check(body.model)
        engine = state.ready_engine()

        def run() -> list[Any]:
            clock.begin()
            return [engine.embed(text) for text in body.inputs()]

        results = await state.worker.call(run)
        return {"model": name,
                "embeddings": [_shorten(r.vector, body.dimensions) for r in results],
                "total_duration": time.monotonic_ns() - clock.start,
                "load_duration": clock.began - clock.start,
                "prompt_eval_count": sum(r.tokens for r in results)}

    @app.post("/api/embeddings")
    async def embeddings(body: LegacyEmbeddingRequest) -> dict[str, Any]:
        info.check(body.model)
        if not body.prompt:
            return {"embedding": []}  # Ollama's answer to an empty prompt
        engine = state.ready_engine()
        result = await state.worker.call(engine.embed, body.prompt)
        return {"embedding": result.vector}
