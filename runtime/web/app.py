"""The web app: the chat page and the HTTP API by dialect, made by `create_app(state)`.

One file of routes and shapes per dialect (page.py, openai.py, llamacpp.py; knowledge.py for a
bundle's documents); each builds the same `GenerationRequest` and formats the same events
(runtime/generation.py). Nothing here imports llama.cpp: the model is reached through `state`,
as a `runtime.generation.Model`.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from runtime import __version__
from runtime.state import State
from runtime.web import knowledge, llamacpp, openai, page
from runtime.web.errors import CatchAll, add_error_handlers
from runtime.web.guard import Guard

MAX_BODY = 8 * 1024 * 1024


def create_app(state: State) -> ASGIApp:
    app = FastAPI(title="llamabundle", version=__version__, docs_url=None, redoc_url=None)
    add_error_handlers(app)
    page.add_routes(app, state)
    openai.add_routes(app, state)
    llamacpp.add_routes(app, state)
    knowledge.add_routes(app, state)
    settings = state.settings
    return Guard(CatchAll(app), bound_host=settings.host, api_key=settings.api_key,
                 max_body=MAX_BODY)
