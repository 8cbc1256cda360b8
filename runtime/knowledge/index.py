"""The real `Knowledge` (runtime/knowledge/passage.py): a bundle's index and its embedder, both
read from the artifact's sections, nothing extracted to disk.

    knowledge = open_knowledge(artifact_path, manifest, threads)  # None: no knowledge bundled

The embedder is a second llama.cpp model, mapped from the artifact at its section's offset like
the chat model's weights, with its own embedding context. Any thread may call it: one caller
at a time uses the embedder and the database (the engine serves one request per thread).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from runtime import system
from runtime.artifact.manifest import Manifest
from runtime.errors import RequestError
from runtime.knowledge.format import EMBEDDER_SECTION, SECTION, read_section, unpack
from runtime.knowledge.passage import MAX_TOP_K, DocumentInfo, Hit, Passage
from runtime.knowledge.search import Index
from runtime.llama.bindings import llama_cpp
from runtime.llama.embedder import N_EMBED_CTX, Embedder
from runtime.llama.model import Tokenizer, load_model

# A question's embedding (and /v1/embeddings') runs on a second thread only when a core is free
# at that instant. On a quiet 2-core machine two threads embed a question in 6 ms instead of 10
# (search p50 9.6 against 15 ms); on a busy one they cost dearly: llama.cpp's threads meet at a
# barrier after every operation of the graph (~200 per embedding) and wait there whenever the
# other one is off its core (search p99 1,075 against 41 ms with two busy processes;
# bench.knowledge_latency, issue #24). Where the OS gives no count of waiting threads
# (Windows), one thread.
QUERY_THREADS = 2


def query_threads(limit: int) -> int:
    """Threads for a question's embedding: the CPUs no other thread wants now, 1 to `limit`."""
    others = system.others_runnable()
    if others is None:
        return 1
    return max(1, min(limit, system.usable_cpus() - others))


class BundledKnowledge:
    """Satisfies runtime.knowledge.passage.Knowledge."""

    def __init__(self, index: Index, model: Any, threads: int, info: dict[str, Any],
                 adaptive: bool = True):
        """threads: at most this many for an embedding; adaptive=False: always this many."""
        self.index = index
        self.model = model
        self.tokenizer = Tokenizer(model)
        self.threads, self.adaptive = threads, adaptive
        self.embedder = Embedder(model, threads, n_batch=N_EMBED_CTX, n_seq_max=8,
                                 own_pooling=True)
        self.info = info
        self._lock = threading.Lock()  # llama.cpp contexts and SQLite connections: one caller

    def describe(self) -> dict[str, Any]:
        return dict(self.info)

    def search(self, query: str, top_k: int) -> list[Hit]:
        if not 1 <= top_k <= MAX_TOP_K:
            raise RequestError(f"top_k must be between 1 and {MAX_TOP_K}", param="top_k")
        query = query.strip()
        if not query:
            return []
        vector = self.query_vector(query)
        with self._lock:
            return self.index.search(query, vector, top_k)

    def query_vector(self, query: str) -> list[float]:
        """The question's embedding, as search() makes it."""
        tokens = self._tokens(self.index.meta.query_prefix + query.strip(), truncate=True)
        with self._lock:
            self._use_threads()
            return self.embedder.embed(tokens)

    def _use_threads(self) -> None:
        self.embedder.use_threads(query_threads(self.threads) if self.adaptive else self.threads)

    def embed(self, texts: Sequence[str], truncate: bool = False) -> list[list[float]]:
        sequences = []
        for text in texts:
            if not text.strip():
                raise RequestError("cannot embed an empty input", param="input")
            sequences.append(self._tokens(text.strip(), truncate))
        with self._lock:
            self._use_threads()
            return self.embedder.embed_many(sequences)

    def documents(self) -> list[DocumentInfo]:
        with self._lock:
            return [DocumentInfo(*row) for row in self.index.titles()]

    def document(self, number: int) -> list[Passage]:
        with self._lock:
            return self.index.passages_of(number)

    def _tokens(self, text: str, truncate: bool) -> list[int]:
        # special=False: a document or question that contains "</s>" is text, not a control token
        tokens = self.tokenizer.tokenize(text, add_bos=True, special=False)
        if len(tokens) > self.embedder.n_batch:
            if not truncate:
                raise RequestError(
                    f"input has {len(tokens)} tokens; the embedding model takes at most "
                    f"{self.embedder.n_batch}", param="input", code="context_length_exceeded")
            tokens = tokens[:self.embedder.n_batch - 1] + tokens[-1:]  # keep the EOS
        return tokens

    def close(self) -> None:
        self.embedder.close()
        llama_cpp.llama_model_free(self.model)


def open_knowledge(artifact: str, manifest: Manifest, threads: int) -> BundledKnowledge | None:
    """The artifact's knowledge, or None when it was built without --knowledge. Call after
    llama.cpp's backend is initialised (Engine.load does it). ArtifactError if damaged."""
    if manifest.knowledge is None:
        return None
    section = manifest.section(SECTION)
    index = Index(unpack(read_section(artifact, section), artifact))
    model = load_model(artifact, manifest.section(EMBEDDER_SECTION).offset)
    return BundledKnowledge(index, model, min(threads, QUERY_THREADS), manifest.knowledge)
