"""llama.cpp's native dialect: /completion (LangChain's Llamafile client posts here), /infill
(fill-in-the-middle, as llama.vim and llama.vscode ask it), /tokenize, /detokenize,
/embedding — the fields its clients read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.requests import Request as HttpRequest

from runtime.generation import Event, Finish, GenerationRequest, Infill, collect
from runtime.settings import MAX_TOKENS
from runtime.state import State
from runtime.web.abandon import answered
from runtime.web.schemas import Request, SamplingFields, bounded
from runtime.web.streaming import sse


class NativeCompletionRequest(SamplingFields):
    prompt: str | list[int]
    n_predict: int | None = bounded("n_predict")  # 0: nothing; -1: until the context is full
    json_schema: dict[str, Any] | None = None


class ExtraFile(Request):
    text: str = ""
    filename: str = "tmp"  # llama.cpp's default


class InfillRequest(SamplingFields):
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraFile] = Field(default_factory=list, max_length=256)
    prompt: str = ""  # the start of the middle, already written: it follows the prefix
    n_predict: int | None = bounded("n_predict")

    def infill(self) -> Infill:
        return Infill(self.input_prefix + self.prompt, self.input_suffix,
                      tuple((f.filename, f.text) for f in self.input_extra))


class TokenizeRequest(Request):
    content: str
    add_special: bool = False
    with_pieces: bool = False


class DetokenizeRequest(Request):
    tokens: list[int] = Field(max_length=MAX_TOKENS)


class NativeEmbeddingRequest(Request):
    content: str


def native_result(text: str, finish: Finish, model: str) -> dict[str, Any]:
    prompt_ms, predicted_ms = finish.prompt_ns / 1e6, finish.generation_ns / 1e6
    return {"content": text, "stop": True, "model": model,
            "tokens_predicted": finish.completion_tokens,
            "tokens_evaluated": finish.prompt_tokens,
            "tokens_cached": finish.cached_tokens,
            "stopped_eos": finish.reason == "stop", "stopped_limit": finish.reason == "length",
            "stop_type": "eos" if finish.reason == "stop" else "limit",
            "timings": {
                "cache_n": finish.cached_tokens,
                "prompt_n": finish.prompt_tokens - finish.cached_tokens,
                "prompt_ms": prompt_ms,
                "predicted_n": finish.completion_tokens, "predicted_ms": predicted_ms,
                "predicted_per_second": (finish.completion_tokens / predicted_ms * 1000
                                         if predicted_ms else 0.0),
                "total_ms": prompt_ms + predicted_ms}}


def native_chunks(events: Iterable[Event], model: str) -> Iterator[dict[str, Any]]:
    for event in events:
        if isinstance(event, Finish):
            yield native_result("", event, model)
            return
        yield {"content": event, "stop": False}


def add_routes(app: FastAPI, state: State) -> None:
    model_id = state.manifest.model_id

    async def native(http: HttpRequest, request: GenerationRequest, stream: bool) -> Response:
        engine = state.ready_engine()

        async def respond() -> Response:
            if not stream:
                def run() -> dict[str, Any]:
                    answer = collect(engine.generate(request))
                    return native_result(answer.text, answer.finish, model_id)
                return JSONResponse(await state.worker.call(run, cancel=request.cancel))
            return await sse(state.worker.stream(
                lambda: native_chunks(engine.generate(request), model_id), request.cancel),
                done=False)

        return await answered(http, request.cancel, respond)

    @app.post("/completion")
    async def completion(http: HttpRequest, body: NativeCompletionRequest) -> Response:
        return await native(http, state.defaults.request(
            prompt=body.prompt, max_tokens=body.n_predict, stop=body.stop,
            json_schema=body.json_schema, **body.sampling()), body.stream)

    @app.post("/infill")
    async def infill(http: HttpRequest, body: InfillRequest) -> Response:
        return await native(http, state.defaults.request(
            infill=body.infill(), max_tokens=body.n_predict, stop=body.stop,
            **body.sampling()), body.stream)

    @app.post("/embedding")
    async def embedding(body: NativeEmbeddingRequest) -> dict[str, Any]:
        engine = state.ready_engine()
        result = await state.worker.call(engine.embed, body.content)
        return {"embedding": result.vector}

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        engine = state.ready_engine()

        def run() -> list[Any]:
            tokens = engine.tokenize(body.content, body.add_special)
            if not body.with_pieces:
                return tokens
            return [{"id": t, "piece": engine.detokenize([t])} for t in tokens]

        return {"tokens": await state.worker.call(run)}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        engine = state.ready_engine()
        return {"content": await state.worker.call(engine.detokenize, body.tokens)}
