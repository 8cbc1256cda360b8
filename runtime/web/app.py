"""The web app: the chat page and the HTTP API by dialect, made by `create_app(state)`.

One file of routes and shapes per dialect (page.py, openai.py, responses.py, llamacpp.py,
ollama.py, anthropic.py; knowledge.py for a bundle's documents); each builds the same
`GenerationRequest` and formats the same events (runtime/generation.py). Nothing here imports
llama.cpp: the model is reached through `state`, as a `runtime.generation.Model`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime import __version__
from runtime.metrics import CONTENT_TYPE, Metrics
from runtime.state import State
from runtime.web import anthropic, knowledge, llamacpp, ollama, openai, page, responses
from runtime.web.bodies import JsonBodies
from runtime.web.errors import CatchAll, add_error_handlers
from runtime.web.guard import Guard

MAX_BODY = 8 * 1024 * 1024
# The methods counted under their own name; any other token a client sends (h11 takes any)
# is counted as "other", so made-up methods cannot grow the metrics without bound.
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def create_app(state: State) -> ASGIApp:
    metrics = state.metrics = Metrics()
    state.worker.report_to(metrics)
    metrics.kv_used.set_function(state.kv_cache_tokens)
    app = FastAPI(title="llamabundle", version=__version__, docs_url=None, redoc_url=None)
    add_error_handlers(app)
    page.add_routes(app, state)
    openai.add_routes(app, state)
    responses.add_routes(app, state)
    llamacpp.add_routes(app, state)
    ollama.add_routes(app, state)
    anthropic.add_routes(app, state)
    knowledge.add_routes(app, state)

    @app.get("/metrics")
    async def metrics_text() -> Response:
        if state.engine is not None:
            metrics.kv_size.set(state.engine.kv_cache()[1])
        return Response(metrics.text(), media_type=CONTENT_TYPE)

    settings = state.settings
    guarded = Guard(JsonBodies(CatchAll(app)), bound_host=settings.host, api_key=settings.api_key,
                    max_body=MAX_BODY)
    return Counted(guarded, metrics, {getattr(r, "path", "") for r in app.routes})


class Counted:
    """Counts every answer by route, method and status, the Guard's refusals (401, 421, 413)
    too. Routes by their template (/assets/{name}), anything unknown as "other", and methods
    outside METHODS as "other": a scanner's random paths and methods must not grow the
    metrics without bound."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: set[str]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = getattr(scope.get("route"), "path", None) or scope["path"]
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(route if route in self.routes else "other",
                                         method, str(status)).inc()
