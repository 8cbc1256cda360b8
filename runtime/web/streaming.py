"""Streamed answers: server-sent events, as OpenAI and llama.cpp stream them (data only) and as
Anthropic does (each named by its type), and newline-delimited JSON, as Ollama does."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import Response, StreamingResponse

from runtime.errors import LlamabundleError
from runtime.web.errors import INTERNAL, error_payload

log = logging.getLogger(__name__)


def _json(chunk: Any) -> bytes:
    return json.dumps(chunk).encode()


async def sse(chunks: AsyncIterator[Any], done: bool = True) -> Response:
    """An SSE response (OpenAI's ends in `data: [DONE]`, llama.cpp's native one does not).
    An error after the first chunk is reported in the stream, as OpenAI does:
    `data: {"error": {...}}`."""
    return await _stream(chunks, lambda chunk: b"data: " + _json(chunk) + b"\n\n",
                         lambda message: error_payload(message, "server_error"),
                         b"data: [DONE]\n\n" if done else b"", "text/event-stream")


async def typed_sse(chunks: AsyncIterator[dict[str, Any]],
                    error: Callable[[str], dict[str, Any]]) -> Response:
    """SSE with each event named by its `type` (`event: <type>` then its data) and no [DONE],
    as Anthropic's Messages and OpenAI's Responses stream; an error after the first event is
    `error(message)`'s event."""
    def frame(event: dict[str, Any]) -> bytes:
        return b"event: " + str(event["type"]).encode() + b"\ndata: " + _json(event) + b"\n\n"

    return await _stream(chunks, frame, error, b"", "text/event-stream")


async def ndjson(chunks: AsyncIterator[Any]) -> Response:
    """Ollama's stream: one JSON object per line; an error after the first ends it with one
    `{"error": "..."}` line (the status is 200 by then)."""
    return await _stream(chunks, lambda chunk: _json(chunk) + b"\n",
                         lambda message: {"error": message}, b"", "application/x-ndjson")


async def _stream(chunks: AsyncIterator[Any], frame: Callable[[Any], bytes],
                  error: Callable[[str], Any], tail: bytes, media_type: str) -> Response:
    """Errors before the first chunk (a prompt too long, a bad schema) stay 4xx JSON: the
    first chunk is awaited before the response starts."""
    first = await anext(chunks)

    async def lines() -> AsyncIterator[bytes]:
        yield frame(first)
        try:
            async for chunk in chunks:
                yield frame(chunk)
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
