"""A fake engine and a real HTTP server around it, for server behaviour that must not depend
on a model's speed: queueing, disconnects, readiness.

FakeEngine satisfies runtime.generation.Model, as the real engine does (`make lint` runs mypy
on this file), so the two cannot drift."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn

from runtime.artifact.manifest import Manifest, Section
from runtime.generation import Embedding, Event, Finish, GenerationRequest, Model
from runtime.settings import resolve
from runtime.state import State
from runtime.web.app import create_app
from runtime.worker import Worker


class FakeEngine:
    n_ctx = 256

    def __init__(self, delay: float = 0.05, script: Sequence[Event] = ()):
        self.delay = delay
        self.script = list(script)  # events to answer with (a Finish last), instead of words
        self.produced = 0
        self.closed = 0
        self.requests: list[GenerationRequest] = []

    def hardware(self) -> dict[str, Any]:
        return {"variant": "haswell", "features": ["AVX", "AVX2", "FMA"],
                "available": ["x64", "haswell"]}

    def generate(self, request: GenerationRequest) -> Iterator[Event]:
        self.requests.append(request)
        return self._words(request)

    def _words(self, request: GenerationRequest) -> Iterator[Event]:
        if self.script:
            yield from self.script
            return
        n = 20 if request.max_tokens < 0 else request.max_tokens
        try:
            for i in range(n):
                time.sleep(self.delay)
                self.produced += 1
                yield f"w{i} "
            yield Finish("length", 3, n, 0)
        finally:
            self.closed += 1

    def embed(self, item: str | Sequence[int]) -> Embedding:
        return Embedding([1.0, 0.0], 2)

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(map(chr, tokens))

    def kv_cache(self) -> tuple[int, int]:
        return self.produced, self.n_ctx


_: type[Model] = FakeEngine  # mypy: the fake has the real interface


def manifest() -> Manifest:
    return Manifest(runtime_version="test", name="Fake", title="Fake Title", model_id="fake",
                    architecture="llama", parameters=1, quantization="F32", context_length=256,
                    gguf_chat_template=False, chat_template="", chat_template_source="fallback",
                    sections=[Section("weights", 1, 65536, 1_000_000,
                                      "xxh3-128:0123456789abcdef0123456789abcdef")])


class FakeServer:
    def __init__(self, engine: FakeEngine | None, port: int, max_waiting: int = 32,
                 **settings: Any):
        # n_predict 20: a default answer takes a second, not the real default's 512 tokens
        self.settings = resolve({}, {"n_predict": 20} | settings | {"port": port}, environ={})
        self.state = State(manifest(), self.settings, Worker(max_waiting=max_waiting))
        self.state.engine = engine
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(self.state), host="127.0.0.1",
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
