"""Hybrid search over a knowledge section's database, given the query's vector.

Two rankings, fused: full text (FTS5's bm25 over runtime/knowledge/terms.py's terms, so Chinese
matches by character bigrams) finds exact names, numbers and rare words; the vectors find the
same meaning in other words or the other language. Reciprocal rank fusion (k = 60, as GPT4All
and most hybrid retrievers) combines ranks, not scores, so bm25's and cosine's scales never
have to be reconciled.

Relevance is the query's cosine with a passage *minus its cosine with the centroid of the
passages in the same script group* (CJK or not), the "lift". A small multilingual embedder
scores every passage in the query's own language higher (e5-small gives a Chinese question
~0.82 with any Chinese passage and ~0.74 with any English one), so raw cosines rank unrelated
same-language text above the right passage in the other language, and no single threshold
fits both languages. Subtracting each group's baseline (a dot product with a stored centroid:
exact, since the mean of dot products is the dot product with the mean) removes that bias.

Two levels calibrated at build time from the corpus itself (bundler/knowledge/calibrate.py):
the question counts as covered only when some passage's lift reaches `threshold` (what
unrelated questions rarely reach), else search returns [] and the model says the documents do
not cover it; and only passages past `floor` (what an unrelated question typically reaches)
take part, in both rankings before they are fused, so a passage bm25 likes for its stop words
cannot push the right one down. The full-text ranking is cut at FULL_TEXT_DEPTH: an OR of a
question's words matches nearly every chunk, and its tail is noise.

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

from runtime.knowledge.format import Group, IndexMeta, read_meta
from runtime.knowledge.passage import Hit, Passage
from runtime.knowledge.terms import terms

RRF_K = 60
CANDIDATES = 50  # from the vectors, before fusion
FULL_TEXT_DEPTH = 10
MAX_QUERY_TERMS = 64  # a pasted page as a query must not become a 5,000-term OR
# A term in more than this share of chunks ("the", "how", 的是) is left out of the full-text
# query: its weight in bm25 is next to nothing, and ranking every chunk it matches was 90 % of
# a search's time at 10,000 chunks. Small corpora keep every term (MIN_COMMON).
COMMON_SHARE = 0.1
MIN_COMMON = 50


@dataclass(frozen=True)
class Scored:
    chunk: int  # the chunk's id (1-based)
    fused: float
    lift: float  # cosine minus the passage group's baseline for this query


@dataclass(frozen=True)
class Query:
    """A query vector ready for the index: int8 with the per-dimension scales folded in."""

    int8: memoryview  # shape (1, dims)
    factor: float  # int8 dot product / factor = cosine
    baselines: list[float]  # per group: the cosine with its centroid


class Index:
    """A knowledge database opened for search. Not thread-safe (the model thread calls it)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        # How many chunks hold each term, for full_text to leave out the common ones (a view
        # over the FTS index: nothing stored).
        db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, fts, row)")
        db.execute("PRAGMA query_only = 1")
        self.meta: IndexMeta = read_meta(db)
        (blob,) = db.execute("SELECT data FROM vectors WHERE id = 1").fetchone()
        self.vectors = memoryview(blob).cast("b", (self.meta.count, self.meta.dims))
        self.rows = memoryview(blob).cast("b")
        self.groups = [Group(**g) for g in self.meta.groups]

    def passage(self, chunk: int) -> Passage:
        path, title, location, text = self.db.execute(
            "SELECT d.path, d.title, c.location, c.text FROM chunks c "
            "JOIN documents d ON d.id = c.document WHERE c.id = ?", (chunk,)).fetchone()
        return Passage(path, title, location, text)

    def documents(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM documents").fetchone()[0])

    def search(self, query: str, vector: Sequence[float], top_k: int) -> list[Hit]:
        """The best `top_k` passages past the calibrated floor, best first; [] unless one
        reaches the calibrated threshold."""
        ranked = self.rank(query, vector, floor=self.meta.floor)
        if not any(s.lift >= self.meta.threshold for s in ranked):
            return []
        return [Hit(self.passage(s.chunk), s.fused, s.lift - self.meta.floor)
                for s in ranked[:top_k]]

    def rank(self, query: str, vector: Sequence[float], floor: float | None = None,
             candidates: int = CANDIDATES, full_text: bool = True,
             vectors: bool = True) -> list[Scored]:
        """The candidates of both rankings whose lift reaches `floor` (None: all), fused,
        best first. `full_text` / `vectors` turn one ranking off (to measure each alone)."""
        q = self.prepare(vector)
        by_vector = self.nearest(q, candidates) if vectors else []
        lifts = dict(by_vector)
        by_text = self.full_text(query, FULL_TEXT_DEPTH) if full_text else []
        for chunk in by_text:
            if chunk not in lifts:
                lifts[chunk] = self.lift(q, chunk)
        if floor is not None:
            by_vector = [(c, lift) for c, lift in by_vector if lift >= floor]
            by_text = [c for c in by_text if lifts[c] >= floor]
        fused: dict[int, float] = {}
        for ranking in (by_text, [chunk for chunk, _ in by_vector]):
            for rank, chunk in enumerate(ranking):
                fused[chunk] = fused.get(chunk, 0.0) + 1.0 / (RRF_K + rank + 1)
        order = sorted(fused, key=lambda chunk: (-fused[chunk], -lifts[chunk]))
        return [Scored(chunk, fused[chunk], lifts[chunk]) for chunk in order]

    def full_text(self, query: str, limit: int) -> list[int]:
        words = self.distinctive(list(dict.fromkeys(terms(query)))[:MAX_QUERY_TERMS])
        if not words:
            return []
        match = " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
        rows = self.db.execute("SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT ?",
                               (match, limit))
        return [rowid for (rowid,) in rows]

    def distinctive(self, words: list[str]) -> list[str]:
        """`words` less those too common to tell chunks apart (fts5vocab: chunks per term)."""
        common = max(MIN_COMMON, COMMON_SHARE * self.meta.count)
        marks = ",".join("?" * len(words))
        counts = dict(self.db.execute(f"SELECT term, doc FROM vocab WHERE term IN ({marks})",
                                      words)) if words else {}
        return [w for w in words if counts.get(w, 0) <= common]

    def nearest(self, q: Query, limit: int) -> list[tuple[int, float]]:
        """(chunk id, lift) of the `limit` passages of highest lift, best first."""
        best: list[tuple[int, float]] = []
        for group, baseline in zip(self.groups, q.baselines, strict=True):
            rows = self.vectors[group.start - 1:group.end - 1]
            distances: Any = simsimd.cdist(q.int8, rows, metric="dot")  # a (1, n) tensor
            dots = memoryview(distances).cast("B").cast("d")
            top = heapq.nlargest(min(limit, len(dots)), range(len(dots)), key=dots.__getitem__)
            best += [(group.start + i, dots[i] / q.factor - baseline) for i in top]
        return sorted(best, key=lambda item: -item[1])[:limit]

    def lift(self, q: Query, chunk: int) -> float:
        dims = self.meta.dims
        dot: Any = simsimd.dot(q.int8.cast("B").cast("b"), self.rows[(chunk - 1) * dims:
                                                                     chunk * dims])
        group = next(i for i, g in enumerate(self.groups) if g.start <= chunk < g.end)
        return float(dot) / q.factor - q.baselines[group]

    def prepare(self, vector: Sequence[float]) -> Query:
        """The query as int8 with the index's per-dimension scales folded in, the factor that
        turns an int8 dot product back into a cosine, and its baseline in each group."""
        scaled = [v * s for v, s in zip(vector, self.meta.scales, strict=True)]
        top = max(abs(v) for v in scaled) or 1.0
        factor = 127.0 / top
        q = array.array("b", [round(v * factor) for v in scaled])
        baselines = [sum(v * c for v, c in zip(vector, g.centroid, strict=True))
                     for g in self.groups]
        return Query(memoryview(q).cast("B").cast("b", (1, len(q))), factor, baselines)
