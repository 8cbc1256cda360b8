"""Streamed answers: server-sent events, as OpenAI and llama.cpp stream, and newline-delimited
JSON, as Ollama does."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import Response, StreamingResponse

from runtime.errors import LlamabundleError
from runtime.web.errors import INTERNAL, error_body

log = logging.getLogger(__name__)


async def sse(chunks: AsyncIterator[Any], done: bool = True) -> Response:
    """An SSE response (OpenAI's ends in `data: [DONE]`, llama.cpp's native one does not).
    An error after the first chunk is reported in the stream, as OpenAI does:
    `data: {"error": {...}}`."""
    return await _stream(chunks, lambda line: b"data: " + line + b"\n\n",
                         lambda message: error_body(message, "server_error"),
                         b"data: [DONE]\n\n" if done else b"", "text/event-stream")


async def ndjson(chunks: AsyncIterator[Any]) -> Response:
    """Ollama's stream: one JSON object per line; an error after the first ends it with one
    `{"error": "..."}` line (the status is 200 by then)."""
    return await _stream(chunks, lambda line: line + b"\n",
                         lambda message: json.dumps({"error": message}).encode(), b"",
                         "application/x-ndjson")


async def _stream(chunks: AsyncIterator[Any], frame: Callable[[bytes], bytes],
                  error: Callable[[str], bytes], tail: bytes, media_type: str) -> Response:
    """Errors before the first chunk (a prompt too long, a bad schema) stay 4xx JSON: the
    first chunk is awaited before the response starts."""
    first = await anext(chunks)

    async def lines() -> AsyncIterator[bytes]:
        yield frame(json.dumps(first).encode())
        try:
            async for chunk in chunks:
                yield frame(json.dumps(chunk).encode())
        except LlamabundleError as e:
            log.error("generation failed: %s", e)
            yield frame(error(str(e)))
            return
        except Exception:  # a bug of ours: logged for us, reported to the client
            log.exception("generation failed")
            yield frame(error(INTERNAL))
            return
        if tail:
            yield tail

    return StreamingResponse(lines(), media_type=media_type,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
