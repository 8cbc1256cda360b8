"""Ollama's dialect: /api/chat, /api/generate, /api/embed, /api/embeddings, and what clients read
about the model (/api/tags, /api/show, /api/ps, /api/version; ollama_info.py). Request bodies:
ollama_schemas.py.

Differences from Ollama, on purpose or by necessity:
- `options.num_ctx` is accepted and ignored: the context is fixed at launch (`--ctx-size`), and
  /api/show reports it so that clients size their prompts to it.
- `template` (a Go template) and `context` are accepted and ignored: the model's own Jinja chat
  template renders every chat. `raw: true` sends the prompt as is.
- `keep_alive` and `think` are accepted and ignored: the model stays loaded while the server
  runs (keep_alive 0 with nothing to generate is answered done_reason "unload", as Ollama
  answers Open WebUI's unload), and no thinking is split from the answer.
- Images are refused with a 400 naming them. `suffix` asks for fill-in-the-middle in the
  model's own FIM tokens (a 400 for a model without them), as Ollama's FIM templates do.
- `tools`: the model's own template renders them (or the generic instruction, for templates
  that know none); calls come back whole, arguments as objects, done_reason "stop". Ollama has
  no tool_choice: the model decides (auto).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request as HttpRequest

from runtime import __version__
from runtime.chat.tools import ToolCall
from runtime.generation import (
    CallArguments,
    CallStart,
    Event,
    Finish,
    GenerationRequest,
    Sources,
    collect,
)
from runtime.state import State
from runtime.web.abandon import answered
from runtime.web.knowledge import sources_json
from runtime.web.ollama_info import OLLAMA_VERSION, ModelInfo, rfc3339
from runtime.web.ollama_schemas import (
    ChatRequest,
    EmbedRequest,
    GenerateRequest,
    Generation,
    LegacyEmbeddingRequest,
    ShowRequest,
)
from runtime.web.streaming import ndjson

LOAD_POLL_S = 0.05

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
    return [{"function": {"index": i, "name": call.name, "arguments": call.arguments_object()}}
            for i, call in enumerate(calls)]


def chunks(events: Iterator[Event], shape: Shape, name: str,
           clock: Clock) -> Iterator[dict[str, Any]]:
    """Every chunk carries the model, the time and `done`; the last adds the stats. Tool calls
    are never sent in fragments: Ollama's clients read whole calls, so they go out together,
    complete, in one chunk before the last."""
    calls: list[ToolCall] = []
    sources: dict[str, Any] = {}  # a knowledge bundle's, on the first chunk as in OpenAI's
    for event in events:
        if isinstance(event, Sources):
            sources = {"sources": sources_json(event)}
            continue
        if isinstance(event, CallStart):
            calls.append(ToolCall(event.id, event.name, ""))
        elif isinstance(event, CallArguments):
            calls[event.index].arguments += event.fragment
        elif isinstance(event, Finish):
            if calls:
                message = chat_shape("")
                message["message"]["tool_calls"] = ollama_calls(calls)
                yield {"model": name, "created_at": rfc3339(), **message, "done": False,
                       **sources}
                sources = {}
            yield {"model": name, "created_at": rfc3339(), **shape(""), "done": True,
                   **clock.stats(event), **sources}
            return
        else:
            yield {"model": name, "created_at": rfc3339(), **shape(event), "done": False,
                   **sources}
            sources = {}


def whole(events: Iterator[Event], shape: Shape, name: str, clock: Clock) -> dict[str, Any]:
    answer = collect(events)
    fields = shape(answer.text)
    if answer.tool_calls:
        fields["message"]["tool_calls"] = ollama_calls(list(answer.tool_calls))
    if answer.sources is not None:
        fields["sources"] = sources_json(answer.sources)
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
        return info.show()

    async def load(name: str, shape: Shape, unload: bool) -> Response:
        """Nothing to generate: Ollama's clients ask this to load the model, and wait for it.
        Loading always ends, loaded or failed (then ready_engine says why)."""
        while state.engine is None and state.load_error is None:
            await asyncio.sleep(LOAD_POLL_S)
        state.ready_engine()
        return JSONResponse(loaded(name, shape, unload))

    async def generation(http: HttpRequest, body: Generation, request: GenerationRequest,
                         name: str, shape: Shape, clock: Clock) -> Response:
        engine = state.ready_engine()

        def events() -> Iterator[Event]:
            clock.begin()
            return engine.generate(request)

        async def respond() -> Response:
            if body.stream is False:
                return JSONResponse(await state.worker.call(
                    lambda: whole(events(), shape, name, clock), cancel=request.cancel))
            return await ndjson(state.worker.stream(
                lambda: chunks(events(), shape, name, clock), request.cancel))

        return await answered(http, request.cancel, respond)

    @app.post("/api/chat")
    async def chat(http: HttpRequest, body: ChatRequest) -> Response:
        clock, name = Clock(), info.check(body.model)
        messages = body.chat()
        if not messages:
            return await load(name, chat_shape, body.unloads)
        request = state.defaults.request(messages=messages, **body.keywords(info.n_ctx),
                                         **body.tool_fields())
        return await generation(http, body, request, name, chat_shape, clock)

    @app.post("/api/generate")
    async def generate(http: HttpRequest, body: GenerateRequest) -> Response:
        clock, name = Clock(), info.check(body.model)
        if not body.prompt and not body.suffix:
            return await load(name, generate_shape, body.unloads)
        request = state.defaults.request(**body.generation(), **body.keywords(info.n_ctx))
        return await generation(http, body, request, name, generate_shape, clock)

    @app.post("/api/embed")
    async def embed(body: EmbedRequest) -> dict[str, Any]:
        clock, name = Clock(), info.check(body.model)
        engine = state.ready_engine()

        def run() -> list[Any]:
            clock.begin()
            return [engine.embed(text, body.truncate) for text in body.inputs()]

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
