"""`build --knowledge`: documents read, chunked, embedded and indexed into the knowledge section.

Everything happens before the artifact is opened for writing: a build whose documents are all
unusable stops with one line and leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bundler.knowledge import calibrate
from bundler.knowledge.chunk import Chunk, chunk_document
from bundler.knowledge.document import Document, Skipped
from bundler.knowledge.embedder import default_embedder
from bundler.knowledge.questions import Written, write_questions
from bundler.knowledge.service import ChatModel, LoadedEmbedder
from bundler.knowledge.sources import find_documents, read_document
from bundler.knowledge.starters import (
    MAX_STARTERS,
    MIN_STARTERS,
    suggest_starters,
    title_questions,
)
from runtime.errors import BuildError, DocumentError
from runtime.knowledge.format import FORMAT_VERSION, Group, IndexMeta, pack, write_database
from runtime.knowledge.search import Index
from runtime.knowledge.terms import script, terms

log = logging.getLogger(__name__)

# progress(total, label) returns a callback taking how many items were done since its last call
Progress = Callable[[int, str], Callable[[int], None]]


@dataclass
class KnowledgeOptions:
    paths: list[Path]
    embedding_model: Path | None = None  # None: the default (multilingual-e5-small)
    max_tokens: int = 256  # per chunk, in the embedder's tokens
    overlap: int = 1  # sentences shared by consecutive chunks of one section
    threads: int | None = None
    # Starter questions: None when the builder gave --starter lines (nothing to write); else
    # the chat model to write them with when headings give too few (None in `chat`: it cannot,
    # `no_chat` says why).
    starters: StarterOptions | None = None


@dataclass
class StarterOptions:
    chat: ChatModel | None = None
    no_chat: str = ""  # why there is no model to ask ("it has no chat template")


@dataclass
class KnowledgeBuild:
    section: bytes  # the knowledge section (runtime/knowledge/format.py)
    embedder: Path  # the GGUF that becomes the embedder section
    info: dict[str, Any]  # the manifest's `knowledge`
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    starters: list[str] = field(default_factory=list)  # for the page, when --starter gave none
    starters_note: str = ""  # how they were made, for the build's output


def build_knowledge(options: KnowledgeOptions, progress: Progress | None = None) -> KnowledgeBuild:
    started = time.monotonic()
    bar = progress or (lambda total, label: lambda n: None)
    documents, skipped = read_all(options.paths, bar)
    if not documents:
        where = ", ".join(str(p) for p in options.paths)
        raise BuildError(f"no usable document in {where} ({len(skipped)} file(s) skipped); "
                         "give .txt .md .html .pdf or .docx files with text")
    gguf = options.embedding_model or default_embedder()
    wanted = options.starters
    headed = suggest_starters(documents) if wanted else []
    # The chat model loads only when it will be asked (in the service, on the first question)
    chat = wanted.chat if wanted and len(headed) < MIN_STARTERS else None
    embedder = LoadedEmbedder(gguf, options.threads, chat)
    starters: list[str] = []
    note = ""
    try:
        count = embedder.counter()
        read = [c for doc in documents for c in chunk_document(
            doc, count, options.max_tokens, options.overlap)]
        chunks = by_script(read)
        vectors = embedder.embed_passages([indexed_text(c) for c in chunks],
                                          bar(len(chunks), "Embedding"))
        meta, db = _database(documents, chunks, vectors, embedder)
        index = Index(db)
        calibration = calibrate.calibrate(index, chunks, embedder.embed_queries)
        db.execute("PRAGMA query_only = 0")  # Index made it read-only: store the calibration
        calibrated = [asdict(replace(g, threshold=levels.threshold, floor=levels.floor,
                                     levels=levels.levels))
                      for g, levels in zip(index.groups, calibration.groups, strict=True)]
        db.execute("UPDATE meta SET value = ? WHERE key = 'groups'", (json.dumps(calibrated),))
        db.executemany("INSERT INTO hubs VALUES (?, ?)",
                       [(kind, np.asarray(values, dtype=np.float32).tobytes())
                        for kind, values in calibration.hubs.items()])
        position = {id(c): i for i, c in enumerate(read)}
        db.executemany("INSERT INTO reading VALUES (?, ?)",
                       [(n, position[id(c)]) for n, c in enumerate(chunks, 1)])
        db.commit()
        index = Index(db)  # as the runtime will open it: with its levels (the starters' check)
        if wanted is not None:
            starters, note = _starters(documents, chunks, index, embedder, headed, wanted)
        db.execute("PRAGMA query_only = 0")
        section = pack(db)
    finally:
        embedder.close()
    info = {
        "format": FORMAT_VERSION, "documents": len(documents), "chunks": len(chunks),
        "embedding_model": {"name": embedder.name, "file": gguf.name,
                            "checksum": embedder.checksum, "dimensions": meta.dims,
                            "query_prefix": meta.query_prefix,
                            "passage_prefix": meta.passage_prefix},
        "chunking": {"max_tokens": options.max_tokens, "overlap_sentences": options.overlap},
        "threshold": {g.name: round(g.threshold, 4) for g in calibration.groups},
        "floor": {g.name: round(g.floor, 4) for g in calibration.groups},
        "self_test": calibration.report(),
        "index_bytes": len(section),
    }
    return KnowledgeBuild(section, gguf, info, skipped, time.monotonic() - started,
                          starters, note)


def _starters(documents: list[Document], chunks: list[Chunk], index: Index,
              embedder: LoadedEmbedder, headed: list[str],
              wanted: StarterOptions) -> tuple[list[str], str]:
    """The page's starter questions and a line saying how they were made: the headings' when
    they give enough; else the model's (checked by retrieval), topped up with the headings'
    and then with questions about the documents' titles."""
    if len(headed) >= MIN_STARTERS:
        return headed, f"Starters: {len(headed)} asked about the documents' headings"
    if wanted.chat is None:
        written, why = Written([], 0), wanted.no_chat
    else:
        written = write_questions(chunks, index, embedder.chat, embedder.embed_queries,
                                  MAX_STARTERS)
        why = written.error or ""
    starters = list(dict.fromkeys(written.questions + headed + title_questions(documents)))
    starters = starters[:MAX_STARTERS]
    made = (f"Starters: {len(written.questions)} written by the model from the documents "
            f"({written.asked} passages asked about; kept those retrieval answers from "
            "their own passage)")
    if why:
        made = f"Starters: not written by the model ({why})"
    rest = len(starters) - len(written.questions)
    if rest:
        made += f"; {rest} asked about headings or titles"
    return starters, made


def read_all(paths: list[Path], bar: Progress) -> tuple[list[Document], list[Skipped]]:
    """Every usable document, and every file left out with why (each logged in one line)."""
    sources, skipped = find_documents(paths)
    for skip in skipped:
        log.warning("skipped %s: %s", skip.path, skip.reason)
    documents = []
    advance = bar(len(sources), "Reading")
    for source in sources:
        try:
            documents.append(read_document(source))
        except DocumentError as e:
            skipped.append(Skipped(source.path, str(e)))
            log.warning("skipped %s", e)
        advance(1)
    return documents, skipped


def indexed_text(chunk: Chunk) -> str:
    """What is embedded and full-text indexed for a chunk: its text under its document's title
    and heading path, so a passage that says "it" still matches the subject named above it."""
    head = " › ".join(dict.fromkeys((chunk.title, *chunk.headings)))
    return f"{head}\n{chunk.text}" if head and head not in chunk.text else chunk.text


def by_script(chunks: list[Chunk]) -> list[Chunk]:
    """Chunks group by group (search centres each group's scores on its own baseline), in
    document order within a group."""
    return sorted(chunks, key=lambda c: script(c.text) == "cjk")


def groups(chunks: list[Chunk], vectors: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for name in ("other", "cjk"):
        ids = [i for i, c in enumerate(chunks) if script(c.text) == name]
        if ids:
            centroid = vectors[ids].mean(axis=0)
            out.append(asdict(Group(name, ids[0] + 1, ids[-1] + 2,
                                    [round(float(v), 6) for v in centroid])))
    return out


def _database(documents: list[Document], chunks: list[Chunk], vectors: np.ndarray,
              embedder: LoadedEmbedder) -> tuple[IndexMeta, Any]:
    ids = {doc.relpath: i for i, doc in enumerate(documents)}
    quantized, scales = quantize(vectors)
    meta = IndexMeta(dims=vectors.shape[1], count=len(chunks), scales=scales.tolist(),
                     groups=groups(chunks, vectors),
                     query_prefix=embedder.query_prefix, passage_prefix=embedder.passage_prefix)
    rows = [(ids[c.document], c.location, c.text, " ".join(terms(indexed_text(c))))
            for c in chunks]
    db = write_database(meta, [(d.relpath, d.title) for d in documents], rows,
                        quantized.tobytes())
    return meta, db


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 with one scale per dimension (its largest magnitude over the corpus is 127): e5's
    vectors share a strong common direction, so a few dimensions are much larger than the rest
    and one scale for all would leave the others a handful of levels."""
    scales = np.abs(vectors).max(axis=0) / 127.0
    scales[scales == 0] = 1.0
    quantized = np.clip(np.rint(vectors / scales), -127, 127).astype(np.int8)
    return quantized, scales.astype(np.float64)
