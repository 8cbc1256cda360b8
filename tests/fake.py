"""A fake engine and a real HTTP server around it, for server behaviour that must not depend
on a model's speed: queueing, disconnects, readiness."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from runtime.cpu import CpuBackend
from runtime.decode import Finish
from runtime.manifest import Manifest
from runtime.server import create_app
from runtime.settings import resolve
from runtime.state import State
from runtime.worker import Worker


class FakeEngine:
    n_ctx = 256
    cpu = CpuBackend("haswell", ("AVX", "AVX2", "FMA"), ("x64", "haswell"))

    def __init__(self, delay: float = 0.05):
        self.delay = delay
        self.produced = 0
        self.closed = 0
        self.requests: list[dict[str, Any]] = []

    def _words(self, request: dict[str, Any]) -> Iterator[str | Finish]:
        n = request.get("max_tokens") or 20
        try:
            for i in range(n):
                time.sleep(self.delay)
                self.produced += 1
                yield f"w{i} "
            yield Finish("length", 3, n, 0)
        finally:
            self.closed += 1

    def chat(self, request: dict[str, Any]) -> Iterator[str | Finish]:
        self.requests.append(request)
        return self._words(request)

    complete = chat

    def embed(self, item: Any) -> tuple[list[float], int]:
        return [1.0, 0.0], 2

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: list[int]) -> str:
        return "".join(map(chr, tokens))

    def piece(self, token: int) -> str:
        return chr(token)


def manifest() -> Manifest:
    return Manifest(runtime_version="test", name="Fake", title="Fake Title", model_id="fake",
                    architecture="llama", parameters=1, quantization="F32", context_length=256,
                    gguf_chat_template=False, chat_template="", chat_template_source="fallback")


class FakeServer:
    def __init__(self, engine: FakeEngine | None, port: int, max_waiting: int = 32,
                 **settings: Any):
        self.settings = resolve({}, settings | {"port": port}, environ={})
        self.state = State(manifest(), Worker(max_waiting=max_waiting))
        self.state.engine = engine
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(self.settings, self.state), host="127.0.0.1",
                                port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()),
                                       daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)
