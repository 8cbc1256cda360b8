"""The web app: the chat page and the HTTP API, made by `create_app(settings, state)`."""

from __future__ import annotations

import base64
import json
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from runtime import __version__
from runtime.errors import LlamabundleError, RequestError
from runtime.guard import Guard, error_body, error_payload
from runtime.paths import templates_dir
from runtime.responses import (
    chat_chunks,
    chat_completion,
    collect,
    native_chunks,
    native_result,
    text_chunks,
    text_completion,
)
from runtime.schemas import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    Generation,
    NativeCompletionRequest,
    NativeEmbeddingRequest,
    TokenizeRequest,
)
from runtime.state import State

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024

# The page may load only its own assets and talk only to this server.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def create_app(settings: Any, state: State) -> Any:
    app = FastAPI(title="llamabundle", version=__version__, docs_url=None, redoc_url=None)
    _add_error_handlers(app)
    _add_page_routes(app, settings, state)
    _add_api_routes(app, settings, state)
    return Guard(app, bound_host=settings.host, api_key=settings.api_key, max_body=MAX_BODY)


def _error(status: int, message: str, type_: str, code: str | None = None,
           param: str | None = None) -> JSONResponse:
    return JSONResponse(error_payload(message, type_, code, param), status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_: Request, e: RequestError) -> JSONResponse:
        return _error(e.status, str(e), e.type, e.code, e.param)

    @app.exception_handler(LlamabundleError)
    async def internal(_: Request, e: LlamabundleError) -> JSONResponse:
        log.error("%s", e)
        return _error(500, str(e), "server_error")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        if first.get("type") == "json_invalid":
            return _error(400, "the request body is not valid JSON", "invalid_request_error",
                          "json_invalid")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return _error(400, message, "invalid_request_error", first.get("type"), where or None)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), "invalid_request_error")


def _add_page_routes(app: FastAPI, settings: Any, state: State) -> None:
    assets = {p.name: p for p in templates_dir().iterdir() if p.is_file()}

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(assets["index.html"], headers=PAGE_HEADERS)

    @app.get("/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in assets:  # only files that exist in templates/, never a path
            return _error(404, f"no asset {name!r}", "not_found_error")
        return FileResponse(assets[name], headers=PAGE_HEADERS)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.engine is not None:
            return JSONResponse({"status": "ok"})
        if state.load_error:
            return JSONResponse({"status": "error", "message": state.load_error}, 500)
        return JSONResponse({"status": "loading"}, 503)

    @app.get("/props")
    async def props() -> dict[str, Any]:
        m = state.manifest
        return {
            "name": m.name, "title": m.title, "model": m.model_id, "version": __version__,
            "system_prompt": settings.system_prompt,
            "n_ctx": state.engine.n_ctx if state.engine else settings.ctx_size,
            "api_key_required": bool(settings.api_key),
            "defaults": {"temperature": settings.temp, "top_p": settings.top_p,
                         "top_k": settings.top_k, "repeat_penalty": settings.repeat_penalty,
                         "max_tokens": settings.n_predict},
            "chat_template_source": m.chat_template_source,
            "cpu": state.engine.cpu.as_dict() if state.engine else None,
        }


def _add_api_routes(app: FastAPI, settings: Any, state: State) -> None:
    created = int(time.time())

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": state.manifest.model_id, "object": "model", "created": created,
            "owned_by": "llamabundle"}]}

    async def openai_generation(body: Generation, run: Callable[[dict[str, Any]], Any],
                                whole: Callable[..., dict[str, Any]],
                                chunks: Callable[..., Iterator[dict[str, Any]]]) -> Response:
        """One answer object (n choices), or its SSE chunks: shared by chat and completions."""
        request = body.engine_request()
        model = state.manifest.model_id
        if not body.stream:
            return JSONResponse(await state.worker.call(lambda: whole(
                [collect(run(r)) for r in _choices(request, body.n)], model)))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await sse(state.worker.stream(lambda: chunks(run(request), model, include_usage)))

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest) -> Response:
        engine = state.ready_engine()
        return await openai_generation(body, engine.chat, chat_completion, chat_chunks)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Response:
        engine = state.ready_engine()
        return await openai_generation(body, engine.complete, text_completion, text_chunks)

    @app.post("/completion")
    async def native_completion(body: NativeCompletionRequest) -> Response:
        engine = state.ready_engine()
        request = body.engine_request()
        model = state.manifest.model_id
        if not body.stream:
            def run() -> dict[str, Any]:
                started = time.monotonic()
                text, finish = collect(engine.complete(request))
                return native_result(text, finish, model, time.monotonic() - started)
            return JSONResponse(await state.worker.call(run))
        return await sse(state.worker.stream(
            lambda: native_chunks(engine.complete(request), model)), done=False)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Response:
        engine = state.ready_engine()
        results = await state.worker.call(lambda: [engine.embed(i) for i in body.inputs()])
        tokens = sum(n for _, n in results)
        return JSONResponse({
            "object": "list", "model": state.manifest.model_id,
            "data": [{"object": "embedding", "index": i,
                      "embedding": _encode(vector, body.encoding_format)}
                     for i, (vector, _) in enumerate(results)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/embedding")
    async def native_embedding(body: NativeEmbeddingRequest) -> dict[str, Any]:
        engine = state.ready_engine()
        vector, _ = await state.worker.call(engine.embed, body.content)
        return {"embedding": vector}

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        engine = state.ready_engine()
        def run() -> list[Any]:
            tokens = engine.tokenize(body.content, body.add_special)
            if not body.with_pieces:
                return tokens
            return [{"id": t, "piece": engine.piece(t)} for t in tokens]

        return {"tokens": await state.worker.call(run)}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        engine = state.ready_engine()
        return {"content": await state.worker.call(engine.detokenize, body.tokens)}


def _choices(request: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """n requests for n choices; a given seed becomes seed, seed+1, ... so they differ."""
    seed = request.get("seed")
    return [request if seed is None else request | {"seed": seed + i} for i in range(n)]


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def sse(chunks: AsyncIterator[Any], done: bool = True) -> Response:
    """An SSE response (OpenAI's ends in `data: [DONE]`, llama.cpp's native one does not).

    Errors before the first chunk (a prompt too long, a bad schema) stay 4xx JSON; one after it
    can only be reported in the stream, as OpenAI does: `data: {"error": {...}}`."""
    first = await anext(chunks)

    async def lines() -> AsyncIterator[bytes]:
        yield b"data: " + json.dumps(first).encode() + b"\n\n"
        try:
            async for chunk in chunks:
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        except LlamabundleError as e:
            log.error("generation failed: %s", e)
            yield b"data: " + error_body(str(e), "server_error") + b"\n\n"
            return
        if done:
            yield b"data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
