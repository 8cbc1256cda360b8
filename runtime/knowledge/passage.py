"""The join between a bundle's knowledge (its index and embedder) and what uses it: the engine's
chat turns, /knowledge/search, /v1/embeddings. The real one reads the artifact's sections
(runtime/knowledge/index.py); tests hand in fakes that satisfy the same Protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# The most passages one search returns: /knowledge/search's bound and the index's own check.
MAX_TOP_K = 50


@dataclass(frozen=True)
class Passage:
    """One stored chunk of a document."""

    document: str  # the file's path relative to the --knowledge root it was found under
    title: str  # the document's title (its heading, metadata or file name)
    location: str  # where in it: "p. 3", "Install › Linux", or "" for a short document
    text: str


@dataclass(frozen=True)
class DocumentInfo:
    """One bundled document, as the chat page lists it."""

    number: int  # its id in the index, for Knowledge.document
    document: str  # the file's path, as Passage.document
    title: str  # as Passage.title
    passages: int


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float  # the fused relevance; higher is better, comparable within one index
    # How far the passage's vector relevance (its lift, runtime/knowledge/search.py) is past
    # what an unrelated question typically reaches (the index's calibrated floor): >= 0, and
    # comparable within one search, so a passage far below the best one can be told apart.
    relevance: float = 0.0
    # It holds the question nearly word for word (runtime/knowledge/search.py's VERBATIM): a
    # candidate whatever its vector relevance, never left out for being far below the best.
    verbatim: bool = False


class Knowledge(Protocol):
    """A bundle's documents as the engine uses them; called only from the model thread."""

    def describe(self) -> dict[str, Any]:
        """For /props, --info and inspect: documents, chunks, embedding model, chunking."""
        ...

    def search(self, query: str, top_k: int) -> list[Hit]:
        """The passages most relevant to `query`, best first, hybrid (full text and vectors,
        fused). Only passages past the index's calibrated relevance threshold: [] means the
        documents do not cover the question."""
        ...

    def embed(self, texts: Sequence[str], truncate: bool = False) -> list[list[float]]:
        """The bundled embedder's vectors (pooled, L2-normalised), for /v1/embeddings; a text
        longer than the embedder takes is cut (truncate) or refused."""
        ...

    def documents(self) -> list[DocumentInfo]:
        """Every bundled document, in the order they were read; any thread may call it."""
        ...

    def document(self, number: int) -> list[Passage]:
        """A document's passages in order (overlaps between them left in); [] for no such
        document. Any thread may call it."""
        ...
