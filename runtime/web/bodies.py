"""Request bodies are JSON whatever their Content-Type, as Ollama and llama-server read them.

Ollama's own examples (`curl localhost:11434/api/chat -d '{...}'`) send curl's default,
`application/x-www-form-urlencoded`, and Ollama decodes the body as JSON anyway. llama-server
does the same on every route, its OpenAI ones included (`json::parse(req.body)` in its
handlers, no look at the type), so guides written for it send no type either. No route here
takes a form, so every route, /v1/* as /api/*, reads a body as JSON; FastAPI would only for a
JSON type (or none), so this middleware says the type is JSON before FastAPI looks.

Except for a browser page of another site. A JSON type makes a cross-site fetch ask the server
first (a CORS preflight, never granted here), while a form or text/plain POST is sent without
asking: reading those as JSON would let any page the user visits run generations here. Browsers
name the page in `Origin`; when it is not this server, the type stays as sent and such a body
is refused as before (400). curl and the SDKs send no Origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

JSON = b"application/json"


class JsonBodies:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _retype(scope["headers"]):
            scope = dict(scope)
            scope["headers"] = [(k, JSON if k == b"content-type" else v)
                                for k, v in scope["headers"]]
        await self.app(scope, receive, send)


def _retype(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request's body type must be read as JSON: a type that is not JSON, sent by
    anything but another site's page."""
    found = dict(headers)
    kind = found.get(b"content-type")
    if kind is None or _is_json(kind):
        return False
    origin = found.get(b"origin")
    return origin is None or _same_origin(origin, found.get(b"host", b""))


def _is_json(kind: bytes) -> bool:
    main = kind.split(b";", 1)[0].strip().lower()
    return main == JSON or (main.startswith(b"application/") and main.endswith(b"+json"))


def _same_origin(origin: bytes, host: bytes) -> bool:
    # "null" (a sandboxed frame, a file:// page) has no netloc: never this server
    netloc = urlsplit(origin.decode("latin-1")).netloc.lower()
    return bool(netloc) and netloc == host.decode("latin-1").lower()
