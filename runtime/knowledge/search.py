"""Hybrid search over a knowledge section's database, given the query's vector.

Two rankings, fused: full text (FTS5's bm25 over runtime/knowledge/terms.py's terms, so Chinese
matches by character bigrams) finds exact names, numbers and rare words; the vectors find the
same meaning in other words or the other language. Reciprocal rank fusion (k = 60, as GPT4All
and most hybrid retrievers) combines ranks, not scores, so bm25's and cosine's scales never
have to be reconciled. A passage is returned only when its cosine with the question reaches the
threshold calibrated at build time from the corpus itself (bundler/knowledge/calibrate.py): a
fused rank says what is best, not whether the best is any good.

Vectors are int8 with one scale per dimension, searched exhaustively with simsimd (exact
search is a fraction of a millisecond per 10,000 chunks; an approximate index would not pay
below ~100k). This module never loads llama.cpp: the caller embeds the query.
"""

from __future__ import annotations

import array
import heapq
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import simsimd

from runtime.knowledge.format import IndexMeta, read_meta
from runtime.knowledge.passage import Hit, Passage
from runtime.knowledge.terms import terms

RRF_K = 60
CANDIDATES = 50  # from each ranking, before fusion
MAX_QUERY_TERMS = 64  # a pasted page as a query must not become a 5,000-term OR


@dataclass(frozen=True)
class Scored:
    chunk: int  # the chunk's id (1-based)
    fused: float
    cosine: float


class Index:
    """A knowledge database opened for search. Not thread-safe (the model thread calls it)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.meta: IndexMeta = read_meta(db)
        (blob,) = db.execute("SELECT data FROM vectors WHERE id = 1").fetchone()
        self.vectors = memoryview(blob).cast("b", (self.meta.count, self.meta.dims))
        self.rows = memoryview(blob).cast("b")

    def passage(self, chunk: int) -> Passage:
        path, title, location, text = self.db.execute(
            "SELECT d.path, d.title, c.location, c.text FROM chunks c "
            "JOIN documents d ON d.id = c.document WHERE c.id = ?", (chunk,)).fetchone()
        return Passage(path, title, location, text)

    def documents(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM documents").fetchone()[0])

    def search(self, query: str, vector: Sequence[float], top_k: int) -> list[Hit]:
        """The best `top_k` passages past the calibrated threshold, best first."""
        kept = [s for s in self.rank(query, vector) if s.cosine >= self.meta.threshold]
        return [Hit(self.passage(s.chunk), s.fused) for s in kept[:top_k]]

    def rank(self, query: str, vector: Sequence[float], candidates: int = CANDIDATES,
             full_text: bool = True, vectors: bool = True) -> list[Scored]:
        """Every candidate of either ranking, fused, best first, with its cosine (no
        threshold). `full_text` / `vectors` turn one ranking off (for measuring each alone)."""
        qvec = self.quantize(vector)
        by_text = self.full_text(query, candidates) if full_text else []
        by_vector = self.nearest(qvec, candidates) if vectors else []
        fused: dict[int, float] = {}
        for ranking in (by_text, [chunk for chunk, _ in by_vector]):
            for rank, chunk in enumerate(ranking):
                fused[chunk] = fused.get(chunk, 0.0) + 1.0 / (RRF_K + rank + 1)
        cosines = dict(by_vector)
        order = sorted(fused, key=lambda chunk: (-fused[chunk], chunk))
        return [Scored(chunk, fused[chunk], cosines.get(chunk) or self.cosine(qvec, chunk))
                for chunk in order]

    def full_text(self, query: str, limit: int) -> list[int]:
        words = list(dict.fromkeys(terms(query)))[:MAX_QUERY_TERMS]
        if not words:
            return []
        match = " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
        rows = self.db.execute("SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT ?",
                               (match, limit))
        return [rowid for (rowid,) in rows]

    def nearest(self, qvec: tuple[memoryview, float], limit: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the `limit` nearest vectors, nearest first."""
        query, factor = qvec
        distances: Any = simsimd.cdist(query, self.vectors, metric="dot")  # a (1, n) tensor
        dots = memoryview(distances).cast("B").cast("d")
        best = heapq.nlargest(min(limit, len(dots)), range(len(dots)), key=dots.__getitem__)
        return [(i + 1, dots[i] / factor) for i in best]

    def cosine(self, qvec: tuple[memoryview, float], chunk: int) -> float:
        query, factor = qvec
        dims = self.meta.dims
        row = self.rows[(chunk - 1) * dims: chunk * dims]
        dot: Any = simsimd.dot(query.cast("B").cast("b"), row)
        return float(dot) / factor

    def quantize(self, vector: Sequence[float]) -> tuple[memoryview, float]:
        """The query as int8 with the index's per-dimension scales folded in, and the factor
        that turns an int8 dot product back into a cosine."""
        scaled = [v * s for v, s in zip(vector, self.meta.scales, strict=True)]
        top = max(abs(v) for v in scaled) or 1.0
        factor = 127.0 / top
        q = array.array("b", [round(v * factor) for v in scaled])
        return memoryview(q).cast("B").cast("b", (1, len(q))), factor
