"""An ASGI middleware for the security defaults: Host check, API key, body size limit.

Written as plain ASGI (not Starlette's BaseHTTPMiddleware) so that streaming responses and
client disconnects pass through untouched.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.web.errors import error_body

# Routes anyone who reaches the server may read without the key: the page shell (which then
# asks for the key) and readiness. Not /props: it tells the system prompt, the template's
# source, the starters and the knowledge bundle, which are the owner's.
PUBLIC_PATHS = {"/", "/health", "/favicon.ico"}
PUBLIC_PREFIXES = ("/assets/",)
# Set on every request's scope: whether it carries the key (always true without a key), so a
# public route can keep details to the key's holders (/health's load error).
AUTHORIZED = "llamabundle.authorized"

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]"}
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]"}


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
        # Bound to every address (a container behind a load balancer, with an API key, which a
        # non-loopback bind requires): clients name it in ways it cannot know (a Service's DNS
        # name, a pod IP, an ingress host), and the key, not the Host, is what keeps pages out.
        self.any_host = bound_host in WILDCARD_HOSTS and bool(api_key)
        self.allowed_hosts = LOOPBACK_NAMES | {bound_host.lower(), f"[{bound_host.lower()}]"}
        self.api_key = api_key.encode()
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        path = scope["path"]
        # DNS rebinding: a hostile page's fetch to evil.example resolving to 127.0.0.1 still
        # says "Host: evil.example"; only requests naming this server get through.
        host = host_name(headers.get(b"host", b"").decode("latin-1").lower())
        if not self.any_host and host not in self.allowed_hosts:
            await _reply(send, 421, error_body("unknown Host header; use "
                         "http://localhost:<port>/", "invalid_request_error", "bad_host", path))
            return
        # Bearer as OpenAI's clients send it; x-api-key as Anthropic's do
        scope[AUTHORIZED] = not self.api_key or hmac.compare_digest(
            headers.get(b"authorization", b""), b"Bearer " + self.api_key) \
            or hmac.compare_digest(headers.get(b"x-api-key", b""), self.api_key)
        if not scope[AUTHORIZED] and path not in PUBLIC_PATHS \
                and not path.startswith(PUBLIC_PREFIXES):
            await _reply(send, 401, error_body("missing or wrong API key: send "
                         "'Authorization: Bearer KEY' (or 'x-api-key: KEY')",
                         "authentication_error", "invalid_api_key", path),
                         [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                await self._too_large(send, path)
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (a chunked upload): read the body here, within the limit, and
        # hand it on whole. Refusing it from inside receive() would not work: the framework's
        # body parser turns any exception there into a 400.
        body, more = await self._read_limited(receive)
        if more:
            await self._too_large(send, path)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_limited(self, receive: Receive) -> tuple[bytes, bool]:
        """The body, and whether it went past the limit (then reading stopped there)."""
        parts: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"", False  # the client left; the app will see http.disconnect
            parts.append(message.get("body", b""))
            seen += len(parts[-1])
            if seen > self.max_body:
                return b"", True
            if not message.get("more_body", False):
                return b"".join(parts), False

    async def _too_large(self, send: Send, path: str) -> None:
        await _reply(send, 413, error_body(f"request body larger than {self.max_body} bytes",
                                           "invalid_request_error", "body_too_large", path))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that gives `body` first, then whatever the client sends (a disconnect)."""
    sent = False

    async def wrapped() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return wrapped
