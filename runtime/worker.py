"""The threads that call the model, off the event loop; requests beyond them wait their turn.

One thread per sequence the decoder runs at once (--parallel): each serves one request, and
generations meet in the decoder's own thread, which batches them (runtime/llama/decoder.py).
Requests beyond that wait in arrival order, or get a 503 when the queue is full. The event loop
never blocks on the model: /health and /v1/models answer during generations, and nothing they
do touches it. (llama-cpp-python's own server cancels a running stream when another request
arrives; here a new request never cancels another.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from runtime.errors import Abandoned, BusyError

if TYPE_CHECKING:
    from runtime.metrics import Metrics  # imported by the web app, off the launch path

log = logging.getLogger(__name__)

_END = object()


class Worker:
    def __init__(self, max_waiting: int = 32, threads: int = 1):
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="model")
        self._max_waiting = max_waiting
        self._pending = 0  # calls queued or running; touched only from the event loop
        self._running = 0  # calls on a model thread now
        self._lock = threading.Lock()
        self.metrics: Metrics | None = None

    def report_to(self, metrics: Metrics) -> None:
        self.metrics = metrics
        metrics.queue_depth.set_function(lambda: max(0, self._pending - self._running))

    def _timed(self, fn: Callable[..., Any],
               cancel: threading.Event | None = None) -> Callable[..., Any]:
        """fn, counted as busy while it runs, its wait in the queue observed; not run at all
        when `cancel` was set while it waited (its client went away)."""
        admitted = time.perf_counter()

        def run(*args: Any) -> Any:
            if cancel is not None and cancel.is_set():
                raise Abandoned("the request was abandoned before it started")
            with self._lock:
                self._running += 1
            if self.metrics:
                self.metrics.queue_wait.observe(time.perf_counter() - admitted)
                self.metrics.busy.inc()
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._running -= 1
                if self.metrics:
                    self.metrics.busy.dec()

        return run

    def _admit(self) -> None:
        if self._pending > self._max_waiting:
            raise BusyError(f"the server is busy ({self._pending} requests waiting); "
                            "try again shortly")
        self._pending += 1

    async def call(self, fn: Callable[..., Any], *args: Any,
                   cancel: threading.Event | None = None) -> Any:
        """Runs fn(*args) on a model thread, in arrival order (skipped if `cancel` is set by
        then)."""
        self._admit()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._timed(fn, cancel), *args)
        finally:
            self._pending -= 1

    async def stream(self, make: Callable[[], Iterator[Any]],
                     cancel: threading.Event | None = None) -> AsyncIterator[Any]:
        """Yields the items of make() as the model thread produces them.

        When the consumer stops (the client disconnected, so the response task was cancelled),
        `cancel` is set: the request's own signal (GenerationRequest.cancel), which the decoder
        obeys within a step; the producer stops at the next item.
        """
        self._admit()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = cancel if cancel is not None else threading.Event()

        def produce() -> None:
            try:
                if cancelled.is_set():  # gone while it waited for a model thread
                    raise Abandoned("the request was abandoned before it started")
                items = make()
                try:
                    for item in items:
                        loop.call_soon_threadsafe(queue.put_nowait, item)
                        if cancelled.is_set():
                            break
                finally:
                    close = getattr(items, "close", None)
                    if close:
                        close()
                loop.call_soon_threadsafe(queue.put_nowait, _END)
            except BaseException as e:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, e)

        future = loop.run_in_executor(self._executor, self._timed(produce))
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()
            self._pending -= 1
            future.add_done_callback(lambda f: f.exception())  # never "exception not retrieved"

    def submit(self, fn: Callable[[], None]) -> None:
        """Runs fn on the model thread without waiting for it (the model load at startup).
        fn handles its own errors; anything it lets through is logged, never lost."""
        self._executor.submit(fn).add_done_callback(_log_failure)


def _log_failure(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        log.error("%s", error, exc_info=error)
