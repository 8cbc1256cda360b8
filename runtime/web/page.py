"""The chat page and what it reads: /, /assets/*, /health, /props (behind the key, if any).
`/` also answers Ollama's clients, which probe it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from runtime import __version__
from runtime.frozen import templates_dir
from runtime.state import State
from runtime.web.errors import error_response
from runtime.web.guard import AUTHORIZED

# The page may load only its own assets and talk only to this server.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def add_routes(app: FastAPI, state: State) -> None:
    assets = {p.name: p for p in templates_dir().iterdir() if p.is_file()}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page(request: Request) -> Response:
        # Ollama's clients probe / (Go's client with HEAD) and compare the text exactly;
        # browsers always ask for HTML, so they still get the page.
        if "text/html" in request.headers.get("accept", ""):
            return FileResponse(assets["index.html"], headers=PAGE_HEADERS)
        return PlainTextResponse("Ollama is running", headers=PAGE_HEADERS)

    @app.get("/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in assets:  # only files that exist in templates/, never a path
            return error_response(404, f"no asset {name!r}", "not_found_error")
        return FileResponse(assets[name], headers=PAGE_HEADERS)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        if state.engine is not None:
            return JSONResponse({"status": "ok"})
        if state.load_error:
            # Why the load failed (paths, library errors) only to the key's holders; the
            # server's log has it anyway.
            said = {"message": state.load_error} if request.scope.get(AUTHORIZED) else {}
            return JSONResponse({"status": "error", **said}, 500)
        return JSONResponse({"status": "loading"}, 503)

    @app.get("/props")
    async def props() -> dict[str, Any]:
        m, s, engine = state.manifest, state.settings, state.engine
        return {
            "name": m.name, "title": m.title, "model": m.model_id, "version": __version__,
            "system_prompt": s.system_prompt,
            "n_ctx": engine.n_ctx if engine else s.ctx_size,
            "api_key_required": bool(s.api_key),
            "defaults": {"temperature": s.temp, "top_p": s.top_p, "top_k": s.top_k,
                         "repeat_penalty": s.repeat_penalty, "max_tokens": s.n_predict},
            "chat_template_source": m.chat_template_source,
            "cpu": engine.hardware() if engine else None,
            "knowledge": engine.knowledge_info() if engine else m.knowledge,
            "starters": m.starters,
        }
