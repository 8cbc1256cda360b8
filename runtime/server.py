"""The web app: the chat page and the HTTP API, made by `create_app(settings, state)`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from runtime import __version__
from runtime.errors import NotReadyError, RequestError
from runtime.guard import Guard, error_body
from runtime.manifest import Manifest
from runtime.paths import templates_dir
from runtime.responses import chat_chunks, chat_completion
from runtime.schemas import ChatRequest
from runtime.worker import Worker

MAX_BODY = 8 * 1024 * 1024

# The page may load only its own assets and talk only to this server.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


class State:
    """What the app serves: the bundle's manifest and, once loaded, its engine."""

    def __init__(self, manifest: Manifest, worker: Worker):
        self.manifest = manifest
        self.worker = worker
        self.engine: Any = None
        self.load_error: str | None = None

    def ready_engine(self) -> Any:
        if self.engine is None:
            raise NotReadyError(self.load_error or "the model is still loading; try again "
                                "in a moment (GET /health says when it is ready)")
        return self.engine


def create_app(settings: Any, state: State) -> Any:
    app = FastAPI(title="llamabundle", version=__version__, docs_url=None, redoc_url=None)
    _add_error_handlers(app)
    _add_page_routes(app, settings, state)
    _add_api_routes(app, settings, state)
    return Guard(app, bound_host=settings.host, api_key=settings.api_key, max_body=MAX_BODY)


def _error(status: int, message: str, type_: str, code: str | None = None,
           param: str | None = None) -> JSONResponse:
    body = json.loads(error_body(status, message, type_, code))
    body["error"]["param"] = param
    return JSONResponse(body, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_: Request, e: RequestError) -> JSONResponse:
        return _error(e.status, str(e), e.type, e.code, e.param)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
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
        }


def _add_api_routes(app: FastAPI, settings: Any, state: State) -> None:
    created = int(time.time())

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": state.manifest.model_id, "object": "model", "created": created,
            "owned_by": "llamabundle"}]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest) -> Response:
        engine = state.ready_engine()
        request = body.engine_request()
        model = state.manifest.model_id
        if not body.stream:
            return JSONResponse(await state.worker.call(
                lambda: chat_completion(engine.chat(request), model)))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await sse(state.worker.stream(
            lambda: chat_chunks(engine.chat(request), model, include_usage)))


async def sse(chunks: AsyncIterator[Any]) -> Response:
    """An SSE response ending in `data: [DONE]`; errors before the first chunk stay 4xx JSON."""
    first = await anext(chunks)  # raises RequestError (prompt too long, ...) as a 4xx

    async def lines() -> AsyncIterator[bytes]:
        yield b"data: " + json.dumps(first).encode() + b"\n\n"
        async for chunk in chunks:
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
