"""Server-sent events, as OpenAI and llama.cpp stream."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import Response, StreamingResponse

from runtime.errors import LlamabundleError
from runtime.web.errors import INTERNAL, error_body

log = logging.getLogger(__name__)


async def sse(chunks: AsyncIterator[Any], done: bool = True) -> Response:
    """An SSE response (OpenAI's ends in `data: [DONE]`, llama.cpp's native one does not).

    Errors before the first chunk (a prompt too long, a bad schema) stay 4xx JSON; one after it
    can only be reported in the stream, as OpenAI does: `data: {"error": {...}}`."""
    first = await anext(chunks)

    async def lines() -> AsyncIterator[bytes]:
        yield b"data: " + json.dumps(first).encode() + b"\n\n"
        try:
            async for chunk in chunks:
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        except LlamabundleError as e:
            log.error("generation failed: %s", e)
            yield b"data: " + error_body(str(e), "server_error") + b"\n\n"
            return
        except Exception:  # a bug of ours: logged for us, reported to the client
            log.exception("generation failed")
            yield b"data: " + error_body(INTERNAL, "server_error") + b"\n\n"
            return
        if done:
            yield b"data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
