"""A generation whose client goes away before its answer starts is abandoned: the request's
cancel signal (GenerationRequest.cancel) is set, and the worker and the decoder drop it wherever
it is: queued, reading its prompt, or generating a whole non-streamed answer.

Once a streamed answer has started, Starlette watches the connection itself and cancels the
response task; the worker then sets the same signal (runtime/worker.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response

from runtime.errors import Abandoned

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's code for it: nobody reads it, the log does


async def answered(http: Request, cancel: threading.Event,
                   respond: Callable[[], Awaitable[Response]]) -> Response:
    """respond()'s response, while the connection is watched: a disconnect sets `cancel`."""

    async def watch() -> None:
        # the body has been read: what comes now is http.disconnect, when the client leaves
        while (await http.receive())["type"] != "http.disconnect":
            pass
        cancel.set()

    watcher = asyncio.create_task(watch())
    try:
        return await respond()
    except Abandoned:
        log.info("%s %s: the client went away; the request was dropped", http.method,
                 http.url.path)
        return Response(status_code=CLIENT_CLOSED)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
