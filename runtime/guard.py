"""An ASGI middleware for the security defaults: Host check, API key, body size limit.

Written as plain ASGI (not Starlette's BaseHTTPMiddleware) so that streaming responses and
client disconnects pass through untouched.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Routes anyone on this machine may read without the key: the page shell and readiness.
PUBLIC_PATHS = {"/", "/health", "/props", "/favicon.ico"}
PUBLIC_PREFIXES = ("/assets/",)

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]"}


def error_payload(message: str, type_: str, code: str | None = None,
                  param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return json.dumps(error_payload(message, type_, code)).encode()


async def _reply(send: Send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def host_name(host_header: str) -> str:
    """The name part of a Host header: 'localhost:8080' -> 'localhost', '[::1]:80' -> '[::1]'."""
    if host_header.startswith("["):
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    def __init__(self, app: ASGIApp, *, bound_host: str, api_key: str, max_body: int):
        self.app = app
        self.allowed_hosts = LOOPBACK_NAMES | {bound_host.lower(), f"[{bound_host.lower()}]"}
        self.api_key = api_key.encode()
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        # DNS rebinding: a hostile page's fetch to evil.example resolving to 127.0.0.1 still
        # says "Host: evil.example"; only requests naming this server get through.
        if host_name(headers.get(b"host", b"").decode("latin-1").lower()) not in self.allowed_hosts:
            await _reply(send, 421, error_body("unknown Host header; use "
                         "http://localhost:<port>/", "invalid_request_error", "bad_host"))
            return
        path = scope["path"]
        if self.api_key and path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.api_key):
                await _reply(send, 401, error_body("missing or wrong API key: send "
                             "'Authorization: Bearer KEY'", "authentication_error",
                             "invalid_api_key"), [(b"www-authenticate", b"Bearer")])
                return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _reply(send, 413, error_body(f"request body larger than {self.max_body} "
                         "bytes", "invalid_request_error", "body_too_large"))
            return
        await self.app(scope, self._limited(receive), send)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:  # chunked uploads carry no Content-Length
                raise BodyTooLarge()
            return message

        return wrapped


class BodyTooLarge(Exception):
    pass
