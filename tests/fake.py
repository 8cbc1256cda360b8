"""A fake engine and a real HTTP server around it, for server behaviour that must not depend
on a model's speed: queueing, disconnects, readiness; and fake knowledge, a few passages
searched by shared words.

FakeEngine satisfies runtime.generation.Model and FakeKnowledge runtime.knowledge.passage's
Knowledge, as the real ones do (`make lint` runs mypy on this file), so they cannot drift."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn

from runtime.artifact.manifest import Manifest, Section
from runtime.errors import Abandoned, NoKnowledgeError
from runtime.generation import ChatMessage, Embedding, Event, Finish, GenerationRequest, Model
from runtime.knowledge import retrieve
from runtime.knowledge.passage import DocumentInfo, Hit, Knowledge, Passage
from runtime.settings import resolve
from runtime.state import State
from runtime.web.app import create_app
from runtime.worker import Worker


def words(text: str) -> list[str]:
    return [w.strip(".,:;?!()[]").lower() for w in text.split()]


class FakeKnowledge:
    """Passages found by the words they share with the query (score: the share of the query's
    words found); [] when none shares one, as the real index returns nothing past its
    threshold."""

    def __init__(self, passages: list[Passage]):
        self.passages = passages
        self.queries: list[str] = []
        self.embedded: list[str] = []
        self.truncated: list[bool] = []

    def describe(self) -> dict[str, Any]:
        return {"documents": len({p.document for p in self.passages}),
                "chunks": len(self.passages),
                "embedding_model": {"name": "fake-e5", "query_prefix": "query: ",
                                    "passage_prefix": "passage: "}}

    def search(self, query: str, top_k: int) -> list[Hit]:
        self.queries.append(query)
        asked = {w for w in words(query) if len(w) > 3}
        scored = [(len(asked & set(words(p.text))) / max(1, len(asked)), p)
                  for p in self.passages]
        ranked = sorted((s, i, p) for i, (s, p) in enumerate(scored) if s > 0)
        ranked.sort(key=lambda t: (-t[0], t[1]))
        return [Hit(p, s) for s, _, p in ranked[:top_k]]

    def embed(self, texts: Sequence[str], truncate: bool = False) -> list[list[float]]:
        self.embedded.extend(texts)
        self.truncated.append(truncate)
        return [[0.6, 0.8, 0.0] for _ in texts]

    def documents(self) -> list[DocumentInfo]:
        paths = list(dict.fromkeys(p.document for p in self.passages))
        return [DocumentInfo(i, path, next(p.title for p in self.passages if p.document == path),
                             sum(p.document == path for p in self.passages))
                for i, path in enumerate(paths)]

    def document(self, number: int) -> list[Passage]:
        paths = list(dict.fromkeys(p.document for p in self.passages))
        if not 0 <= number < len(paths):
            return []
        return [p for p in self.passages if p.document == paths[number]]


_k: type[Knowledge] = FakeKnowledge  # mypy: the fake has the real interface


class FakeEngine:
    """Says "w0 w1 ..."; with knowledge, retrieves as the real engine does, counting a chat's
    tokens as its words plus four per message."""

    n_ctx = 256
    fills_in_middle = False

    def __init__(self, delay: float = 0.05, script: Sequence[Event] = (),
                 knowledge: FakeKnowledge | None = None):
        self.delay = delay
        self.script = list(script)  # events to answer with (a Finish last), instead of words
        self.produced = 0
        self.closed = 0
        self.requests: list[GenerationRequest] = []
        self.knowledge = knowledge

    def hardware(self) -> dict[str, Any]:
        return {"variant": "haswell", "features": ["AVX", "AVX2", "FMA"],
                "available": ["x64", "haswell"]}

    def generate(self, request: GenerationRequest) -> Iterator[Event]:
        if self.knowledge is not None and request.knowledge and request.messages is not None:
            return retrieve.answer(self.knowledge, request,
                                   lambda asked: chat_length(asked.messages or ()), self.n_ctx,
                                   self._generate)
        return self._generate(request)

    def _generate(self, request: GenerationRequest) -> Iterator[Event]:
        self.requests.append(request)
        return self._words(request)

    def knowledge_info(self) -> dict[str, Any] | None:
        return self.knowledge.describe() if self.knowledge else None

    def prompt_tokens(self, request: GenerationRequest) -> int:
        if request.messages is not None:
            return chat_length(request.messages)
        return len(request.prompt or ())

    def search(self, query: str, top_k: int) -> list[Hit]:
        return retrieve.find(self._library(), query, top_k)  # what a chat turn's prompt gets

    def documents(self) -> list[DocumentInfo]:
        return self._library().documents()

    def document(self, number: int) -> list[Passage]:
        return self._library().document(number)

    def _library(self) -> FakeKnowledge:
        if self.knowledge is None:
            raise NoKnowledgeError("this bundle has no documents")
        return self.knowledge

    def _words(self, request: GenerationRequest) -> Iterator[Event]:
        if self.script:
            yield from self.script
            return
        n = 20 if request.max_tokens < 0 else request.max_tokens
        try:
            for i in range(n):
                time.sleep(self.delay)
                if request.cancel.is_set():  # as the decoder: dropped within a step
                    raise Abandoned("the request was abandoned")
                self.produced += 1
                yield f"w{i} "
            yield Finish("length", 3, n, 0)
        finally:
            self.closed += 1

    def embed(self, item: str | Sequence[int], truncate: bool = False) -> Embedding:
        if self.knowledge is not None and isinstance(item, str):
            text = retrieve.embedding_text(item, self.knowledge.describe())
            return Embedding(self.knowledge.embed([text], truncate)[0], 2)
        return Embedding([1.0, 0.0], 2)

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(map(chr, tokens))

    def kv_cache(self) -> tuple[int, int]:
        return self.produced, self.n_ctx


_: type[Model] = FakeEngine  # mypy: the fake has the real interface


def chat_length(messages: Sequence[ChatMessage]) -> int:
    return sum(len(m.content.split()) + 4 for m in messages)


def manifest(starters: Sequence[str] = ()) -> Manifest:
    return Manifest(runtime_version="test", name="Fake", title="Fake Title", model_id="fake",
                    architecture="llama", parameters=1, quantization="F32", context_length=256,
                    gguf_chat_template=False, chat_template="", chat_template_source="fallback",
                    sections=[Section("weights", 1, 65536, 1_000_000,
                                      "xxh3-128:0123456789abcdef0123456789abcdef")],
                    starters=list(starters))


class FakeServer:
    def __init__(self, engine: FakeEngine | None, port: int, max_waiting: int = 32,
                 starters: Sequence[str] = (), **settings: Any):
        # n_predict 20: a default answer takes a second, not the real default's 512 tokens
        self.settings = resolve({}, {"n_predict": 20} | settings | {"port": port}, environ={})
        self.state = State(manifest(starters), self.settings,
                           Worker(max_waiting=max_waiting))
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
