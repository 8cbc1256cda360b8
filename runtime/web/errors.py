"""Errors chosen by exception type, never by message text, in the shape of the dialect asked:
OpenAI's `{"error": {"message", "type", "param", "code"}}`, Ollama's `{"error": "text"}` on
/api/*, or Anthropic's `{"type": "error", "error": {"type", "message"}}` on /v1/messages*.
And a catch-all that answers in the same shapes when something unexpected fails."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.errors import LlamabundleError, RequestError

log = logging.getLogger(__name__)

INTERNAL = "internal error; see the server's log"
OLLAMA_PREFIX = "/api/"
ANTHROPIC_PREFIX = "/v1/messages"
# Our error types by Anthropic's names for them (theirs that match are kept as they are).
ANTHROPIC_TYPES = {"server_busy": "overloaded_error", "model_loading": "overloaded_error",
                   "server_error": "api_error"}


def error_payload(message: str, type_: str, code: str | None = None,
                  param: str | None = None, path: str = "") -> dict[str, Any]:
    """The error in the shape of the dialect `path` belongs to."""
    if path.startswith(OLLAMA_PREFIX):
        return {"error": message}  # Ollama's clients read a string, not an object
    if path.startswith(ANTHROPIC_PREFIX):
        kind = "request_too_large" if code == "body_too_large" else \
            ANTHROPIC_TYPES.get(type_, type_)
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_body(message: str, type_: str, code: str | None = None, path: str = "") -> bytes:
    return json.dumps(error_payload(message, type_, code, path=path)).encode()


def error_response(status: int, message: str, type_: str, code: str | None = None,
                   param: str | None = None, path: str = "") -> JSONResponse:
    return JSONResponse(error_payload(message, type_, code, param, path), status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(r: Request, e: RequestError) -> JSONResponse:
        return error_response(e.status, str(e), e.type, e.code, e.param, r.url.path)

    @app.exception_handler(LlamabundleError)
    async def internal(r: Request, e: LlamabundleError) -> JSONResponse:
        log.error("%s", e)
        return error_response(500, str(e), "server_error", path=r.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(r: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        if first.get("type") == "json_invalid":
            return error_response(400, "the request body is not valid JSON",
                                  "invalid_request_error", "json_invalid", path=r.url.path)
        loc = tuple(first.get("loc", ()))
        if loc[:1] in (("body",), ("query",), ("path",)):  # where it came from, not its name
            loc = loc[1:]
        where = ".".join(str(p) for p in loc)
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return error_response(400, message, "invalid_request_error", first.get("type"),
                              where or None, r.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(r: Request, e: HTTPException) -> JSONResponse:
        return error_response(e.status_code, str(e.detail), "invalid_request_error",
                              path=r.url.path)

    @app.exception_handler(Exception)
    async def unexpected(r: Request, e: Exception) -> JSONResponse:
        # Starlette sends this, then raises e on: CatchAll (around the app) logs it, once.
        return error_response(500, INTERNAL, "server_error", path=r.url.path)


class CatchAll:
    """Any exception the app lets out: logged once with its traceback, and answered as a 500
    in the dialect's shape if no answer has started (Starlette's own is plain text); not
    raised on to uvicorn, which would log it a second time.

    Plain ASGI, so streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if scope["type"] != "http" or started:
                return  # the answer is under way: all we can do is end it
            body = error_body(INTERNAL, "server_error", path=scope.get("path", ""))
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
