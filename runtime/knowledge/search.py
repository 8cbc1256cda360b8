"""Hybrid search over a knowledge section's database, given the query's vector.

Two rankings, fused: the vectors find the same meaning in other words or the other language;
full text (FTS5's bm25 over runtime/knowledge/terms.py's terms, so Chinese matches by character
bigrams) finds exact names, numbers and rare words. Reciprocal rank fusion (k = 60, as GPT4All
and most hybrid retrievers) combines ranks, not scores, so bm25's and cosine's scales never
have to be reconciled.

Full text takes part only for a *strong match*: a passage holding at least STRONG_MATCH (half)
of the question's term weight, each term weighted as bm25 weighs it (its idf). Plain RRF let
weak full-text ranks pull good vector hits down: at this depth, being in both lists (~1/61 more)
outweighs any move within one (1/61 - 1/62 = 1/3782), so a passage sharing one common word
with the question went ahead of the vectors' first whenever the vectors had it anywhere, and a
question answered in the other language (which full text cannot match) had its answer pushed
down by same-language passages sharing "warranty" or "hours". Measured on bench.knowledge's
bilingual set (19 documents, 68 chunks, 84 answerable questions split by a hash into dev 43
and held-out 41; the rule was chosen on dev), hit@1 / hit@5 / MRR:

    ranking                        dev                  held-out             all
    full text alone                0.605 0.674 0.633    0.610 0.659 0.638    0.607 0.667 0.635
    vectors alone                  0.860 0.977 0.913    0.854 1.000 0.923    0.857 0.988 0.918
    plain RRF                      0.767 0.977 0.849    0.780 1.000 0.872    0.774 0.988 0.860
    RRF of strong matches (this)   0.884 0.977 0.922    0.854 1.000 0.923    0.869 0.988 0.923

What else was tried, on dev: weighted RRF (full text x0.25 to x0.75) stays at hit@1 0.744 to
0.767, and with a small k (0 to 2) x0.25 only ties the vectors; adding a normalised bm25 to
the lift (bm25 over the query's ideal score, x0.005 to x0.05) 0.767 to 0.837, since bm25's
ratio to the ideal score does not separate right from wrong first hits (a wrong one reached
0.55), while the share of the term weight a passage holds does: full text's wrong first hits
held at most 0.425 of it (all cross-language but two, each a neighbouring section of the right
document), and the one right first hit the vectors had second held 0.53. The gate at 0.4 or 0.6
ties the vectors on dev; at 0.5 it adds one question (a price in a Chinese table the vectors
put second); held-out shows no gain over the vectors, and no loss. Full text is thus a
tie-breaker for exact wording; most of the ranking is the vectors'. A long query (a pasted
page) has no strong match, and is ranked by its vectors alone.

Relevance is the query's cosine with a passage *minus its cosine with the centroid of the
passages in the same script group* (CJK or not), the "lift". A small multilingual embedder
scores every passage in the query's own language higher (e5-small gives a Chinese question
~0.82 with any Chinese passage and ~0.74 with any English one), so raw cosines rank unrelated
same-language text above the right passage in the other language, and no single threshold
fits both languages. Subtracting each group's baseline (a dot product with a stored centroid:
exact, since the mean of dot products is the dot product with the mean) removes that bias.

Two levels per script group, calibrated at build time from the corpus itself
(bundler/knowledge/calibrate.py): the question counts as covered only when some passage's lift
reaches its group's `threshold` (what unrelated questions rarely reach), else search returns []
and the model says the documents do not cover it; and only passages past their group's `floor`
(what an unrelated question typically reaches) take part, in both rankings before they are
fused. Per group, because lifts into a group of similar passages run lower for everything: on
the test set, unrelated questions' median best lift is 0.032 among English passages and 0.023
among Chinese ones, and one threshold (0.045) cut four of the 21 dev questions answered in
Chinese (three of them asked in English); per group (0.054 and 0.038), none is cut, and none
of the set's 20 unanswerable questions gets an answer (2 did). The full-text ranking is cut
at FULL_TEXT_DEPTH before the strong-match test: an OR of a question's words matches nearly
every chunk, and its tail is noise.

Hubs (format 3, issue #24). Some passages are near every question: a short line ("pip install
cn2an -U"), a list of links, a code sample with a few Chinese comments. On twelve PyPI READMEs
most off-topic questions of a language (15 and 19 of 20) had the same one or two of them as
their best passage, so the threshold was a hub's lift, and it sat above the lift of the
passages that answer questions asked in Chinese about English text (zh->en: 0.05-0.07 against
0.09). The build measures each passage's *hub score*, its mean lift over off-topic questions
of each script (query in CJK or not, terms.script), and the judging (floor, threshold, the
relevance a hit reports) uses the lift less the hub score for the query's script: what is
specific to this question, as CSLS does for cross-lingual retrieval. The levels are then
calibrated per query script and passage group from those corrected lifts. The ranking keeps
the lift as it is (the corrected one ranked worse on bench.knowledge's dev half). An index
without hub scores (format 2 or 1) is searched and judged as before, with its per-group
levels.

Vectors are int8 with one scale per dimension, searched exhaustively with simsimd (exact
search is a fraction of a millisecond per 10,000 chunks; an approximate index would not pay
below ~100k). This module never loads llama.cpp: the caller embeds the query.
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import heapq
import itertools
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import simsimd

from runtime.knowledge.format import Group, IndexMeta, read_meta
from runtime.knowledge.passage import Hit, Passage
from runtime.knowledge.terms import is_cjk_pair, script, terms

RRF_K = 60
CANDIDATES = 50  # from the vectors, before fusion
FULL_TEXT_DEPTH = 10
MAX_QUERY_TERMS = 64  # a pasted page as a query must not become a 5,000-term OR
# A term in more than this share of chunks ("the", "how", 的是) is left out of the full-text
# query: its weight in bm25 is next to nothing, and ranking every chunk it matches was 90 % of
# a search's time at 10,000 chunks. Small corpora keep every term (MIN_COMMON).
COMMON_SHARE = 0.1
MIN_COMMON = 50
# Full text takes part in the fusion only for a passage holding at least this share of the
# query's term weight (bm25's idf): most of what the question names, not one stray word of it.
STRONG_MATCH = 0.5
# A passage that says what the question asks nearly word for word is always a candidate,
# whatever the vectors think of it (issue #24: "一个包含 60 亿参数的模型通常多大？" against a
# document saying "一个包含 60 亿参数的模型通常在 20GB 以上" found nothing: the passage's lift was
# below its group's threshold). "Nearly word for word": the passage holds at least VERBATIM of
# the question's term weight, and at least VERBATIM_TERMS distinctive terms (in at most a
# DISTINCTIVE share of the chunks, or in one), so a question made of common words alone
# ("what is it?") never qualifies. The calibrated threshold still decides among the rest, so an
# off-topic question (whose words the documents mostly do not hold) is still not covered.
VERBATIM = 0.6
VERBATIM_TERMS = 3
DISTINCTIVE = 0.25


@dataclass(frozen=True)
class Scored:
    chunk: int  # the chunk's id (1-based)
    fused: float
    lift: float  # cosine minus the passage group's baseline for this query
    verbatim: bool = False  # holds the question nearly word for word (VERBATIM)


@dataclass(frozen=True)
class Match:
    """A full-text match: the share of the query's term weight the chunk holds."""

    chunk: int
    share: float
    verbatim: bool  # VERBATIM: always a candidate


@dataclass(frozen=True)
class Query:
    """A query vector ready for the index: int8 with the per-dimension scales folded in."""

    int8: memoryview  # shape (1, dims)
    factor: float  # int8 dot product / factor = cosine
    baselines: list[float]  # per group: the cosine with its centroid
    script: str = ""  # the query's script ("cjk" or "other"; "": not known, levels per group)
    hubs: tuple[memoryview | None, ...] = ()  # per group: its chunks' hub scores ("Hubs" above)


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
        self.starts = [g.start for g in self.groups]
        self.centroids = [memoryview(array.array("f", g.centroid)) for g in self.groups]
        self.hubs: dict[str, array.array[float]] = {}
        # Each chunk's place in its document's reading order, where the index keeps it.
        self.reading_order = "c.id"
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'reading'").fetchone():
            self.reading_order = "(SELECT position FROM reading r WHERE r.chunk = c.id), c.id"
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'hubs'").fetchone():
            self.set_hubs({name: array.array("f", bytes(blob)).tolist()
                           for name, blob in db.execute("SELECT script, data FROM hubs")})

    def set_hubs(self, hubs: dict[str, list[float]]) -> None:
        """Each chunk's hub score for queries of each script ("Hubs" above; the build
        calibrates them, then ranks its probes with them)."""
        self.hubs = {name: array.array("d", values) for name, values in hubs.items()}

    def passage(self, chunk: int) -> Passage:
        path, title, location, text = self.db.execute(
            "SELECT d.path, d.title, c.location, c.text FROM chunks c "
            "JOIN documents d ON d.id = c.document WHERE c.id = ?", (chunk,)).fetchone()
        return Passage(path, title, location, text)

    def documents(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM documents").fetchone()[0])

    def titles(self) -> list[tuple[int, str, str, int]]:
        """(id, path, title, passages) of every document, in the order they were read."""
        return [tuple(row) for row in self.db.execute(
            "SELECT d.id, d.path, d.title, count(c.id) FROM documents d "
            "LEFT JOIN chunks c ON c.document = d.id GROUP BY d.id ORDER BY d.id")]

    def passages_of(self, document: int) -> list[Passage]:
        """A document's chunks in reading order (an index without the `reading` table: in
        index order, the reading order within each script group)."""
        return [Passage(*row) for row in self.db.execute(
            "SELECT d.path, d.title, c.location, c.text FROM chunks c "
            f"JOIN documents d ON d.id = c.document WHERE d.id = ? ORDER BY {self.reading_order}",
            (document,))]

    def group(self, chunk: int) -> Group:
        return self.groups[bisect.bisect_right(self.starts, chunk) - 1]

    def search(self, query: str, vector: Sequence[float], top_k: int) -> list[Hit]:
        """The best `top_k` passages past their group's calibrated floor (or holding the
        question nearly word for word), best first; [] unless one reaches its group's
        calibrated threshold or holds the question nearly word for word."""
        ranked = self.rank(query, vector, floor=True)
        asked = script(query)
        if not any(s.verbatim or s.lift >= self.levels(asked, s.chunk)[0] for s in ranked):
            return []
        return [Hit(self.passage(s.chunk), s.fused,
                    max(0.0, s.lift - self.levels(asked, s.chunk)[1]), s.verbatim)
                for s in ranked[:top_k]]

    def levels(self, asked: str, chunk: int) -> tuple[float, float]:
        """(threshold, floor) of the chunk's group for a query written in the script `asked`."""
        return self.group(chunk).levels_for(asked)

    def rank(self, query: str, vector: Sequence[float], floor: bool = False,
             candidates: int = CANDIDATES, full_text: bool = True) -> list[Scored]:
        """The vectors' candidates and full text's strong matches, fused, best first; with
        `floor`, only passages whose lift reaches their group's floor, and those holding the
        question nearly word for word. `full_text=False`: the vectors alone (to measure
        them)."""
        q = self.prepare(vector, script(query))
        # Ranked by the lift as it is, judged (floor, threshold, relevance) by the lift less the
        # passage's hub score ("Hubs" above): taking the hub scores off in the ranking too put
        # a passage answering the question below others (bench.knowledge's dev half: hit@1
        # 0.884 -> 0.791, en->zh 0.7 -> 0.4); in the judging it is what lets zh->en through.
        plain = dataclasses.replace(q, hubs=())
        by_vector = [(c, lift - self.hub(q, c)) for c, lift in self.nearest(plain, candidates)]
        lifts = dict(by_vector)
        matched = self.matches(query, FULL_TEXT_DEPTH) if full_text else []
        by_text = [m.chunk for m in matched if m.share >= STRONG_MATCH]
        verbatim = {m.chunk for m in matched if m.verbatim}
        for chunk in by_text:
            if chunk not in lifts:
                lifts[chunk] = self.lift(q, chunk)
        if floor:
            by_vector = [(c, lift) for c, lift in by_vector
                         if lift >= self.levels(q.script, c)[1] or c in verbatim]
            by_text = [c for c in by_text
                       if lifts[c] >= self.levels(q.script, c)[1] or c in verbatim]
        fused: dict[int, float] = {}
        for ranking in (by_text, [chunk for chunk, _ in by_vector]):
            for rank, chunk in enumerate(ranking):
                fused[chunk] = fused.get(chunk, 0.0) + 1.0 / (RRF_K + rank + 1)
        order = sorted(fused, key=lambda chunk: (-fused[chunk], -lifts[chunk]))
        return [Scored(chunk, fused[chunk], lifts[chunk], chunk in verbatim) for chunk in order]

    def full_text(self, query: str, limit: int) -> list[int]:
        """bm25's best `limit` chunks for the query's distinctive terms, best first."""
        return self._bm25(list(self.weights(query)), limit)

    def strong_matches(self, query: str, limit: int) -> list[int]:
        """Those of full_text's chunks that hold at least STRONG_MATCH of the query's term
        weight, in bm25's order."""
        return [m.chunk for m in self.matches(query, limit) if m.share >= STRONG_MATCH]

    def matches(self, query: str, limit: int) -> list[Match]:
        """full_text's chunks, in bm25's order, each with the share of the query's term weight
        it holds and whether it holds the question nearly word for word."""
        weights = self.weights(query)
        chunks = self._bm25(list(weights), limit)
        if not chunks:
            return []
        held = dict.fromkeys(chunks, 0.0)
        distinct = dict.fromkeys(chunks, 0)
        rare = _idf(self.meta.count, max(1, int(DISTINCTIVE * self.meta.count)))
        marks = ",".join("?" * len(chunks))
        for word, weight in weights.items():
            # Which of the few chunks hold the term: FTS5 answers from the term's doclist, the
            # rowids bound (the index is contentless: a chunk's terms are not stored).
            for (chunk,) in self.db.execute(
                    f"SELECT rowid FROM fts WHERE fts MATCH ? AND rowid IN ({marks})",
                    (_phrase(word), *chunks)):
                held[chunk] += weight
                distinct[chunk] += weight >= rare
        total = sum(weights.values())
        # A Chinese question's bigrams that straddle its question word (精确地切开 asked as
        # 怎样切开: 子怎 怎样 样切) are in no document and weigh the most, so a question in a
        # passage's own words fell short of VERBATIM. A CJK bigram no chunk holds does not
        # count against the verbatim share (it still does for STRONG_MATCH); an off-topic
        # question still needs VERBATIM_TERMS distinctive terms that a passage holds.
        nowhere = _idf(self.meta.count, 0)
        asked = total - sum(w for t, w in weights.items() if w == nowhere and is_cjk_pair(t))
        return [Match(chunk, held[chunk] / total,
                      held[chunk] >= VERBATIM * asked and distinct[chunk] >= VERBATIM_TERMS)
                for chunk in chunks]

    def weights(self, query: str) -> dict[str, float]:
        """The query's terms, less those too common to tell chunks apart, each with bm25's
        weight for it (FTS5's idf: log((N - n + 0.5) / (n + 0.5)), at least 1e-6, n the chunks
        holding it). A term no chunk holds keeps its (large) weight: a question naming what the
        documents never mention is not matched by the rest of its words."""
        words = list(dict.fromkeys(terms(query)))[:MAX_QUERY_TERMS]
        if not words:
            return {}
        marks = ",".join("?" * len(words))
        counts = dict(self.db.execute(f"SELECT term, doc FROM vocab WHERE term IN ({marks})",
                                      words))
        total, common = self.meta.count, max(MIN_COMMON, COMMON_SHARE * self.meta.count)
        return {w: _idf(total, n) for w in words if (n := counts.get(w, 0)) <= common}

    def _bm25(self, words: list[str], limit: int) -> list[int]:
        if not words:
            return []
        rows = self.db.execute("SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT ?",
                               (" OR ".join(_phrase(w) for w in words), limit))
        return [rowid for (rowid,) in rows]

    def nearest(self, q: Query, limit: int) -> list[tuple[int, float]]:
        """(chunk id, lift) of the `limit` passages of highest lift, best first."""
        best = [hit for i in range(len(self.groups)) for hit in self.nearest_in(q, i, limit)]
        return sorted(best, key=lambda item: -item[1])[:limit]

    def nearest_in(self, q: Query, group: int, limit: int) -> list[tuple[int, float]]:
        """nearest() within the `group`-th script group (by the lift as it is: hub scores are
        taken off the candidates, see rank)."""
        g, baseline = self.groups[group], q.baselines[group]
        distances: Any = simsimd.cdist(q.int8, self.vectors[g.start - 1:g.end - 1],
                                       metric="dot")  # a (1, n) tensor
        dots = memoryview(distances).cast("B").cast("d")
        k = min(limit, len(dots))
        # The k-th largest value first (heapq over plain floats), then the few indices at or
        # above it: a third of the time of nlargest with a key over every index (3.3 of a
        # search's 16 ms at 10k chunks); sorted() is stable, so ties keep their order.
        least = heapq.nlargest(k, dots)[-1] if k else 0.0
        above = itertools.compress(range(len(dots)), map(least.__le__, dots))  # all in C
        top = sorted(above, key=dots.__getitem__, reverse=True)[:k]
        return [(g.start + i, dots[i] / q.factor - baseline) for i in top]

    def lift(self, q: Query, chunk: int) -> float:
        dims = self.meta.dims
        dot: Any = simsimd.dot(q.int8.cast("B").cast("b"), self.rows[(chunk - 1) * dims:
                                                                     chunk * dims])
        group = bisect.bisect_right(self.starts, chunk) - 1
        return float(dot) / q.factor - q.baselines[group] - self.hub(q, chunk)

    def hub(self, q: Query, chunk: int) -> float:
        """The chunk's hub score for the query's script (0 without: an index before format 3,
        or a query prepared without its script)."""
        if not q.hubs:
            return 0.0
        group = bisect.bisect_right(self.starts, chunk) - 1
        hubs = q.hubs[group]
        return hubs[chunk - self.groups[group].start] if hubs is not None else 0.0

    def lifts(self, q: Query) -> list[float]:
        """Every chunk's lift, in chunk order (the build's calibration)."""
        return [lift for i in range(len(self.groups))
                for _, lift in sorted(self.nearest_in(q, i, self.groups[i].end
                                                      - self.groups[i].start))]

    def prepare(self, vector: Sequence[float], asked: str = "") -> Query:
        """The query as int8 with the index's per-dimension scales folded in, the factor that
        turns an int8 dot product back into a cosine, its baseline in each group, and the hub
        scores for a query written in the script `asked` ("": none, the lifts as they are)."""
        scaled = [v * s for v, s in zip(vector, self.meta.scales, strict=True)]
        top = max(abs(v) for v in scaled) or 1.0
        factor = 127.0 / top
        q = array.array("b", [round(v * factor) for v in scaled])
        floats = memoryview(array.array("f", vector))
        baselines = [float(cast(Any, simsimd.dot(floats, c))) for c in self.centroids]
        hubs = self.hubs.get(asked)
        per_group = tuple(memoryview(hubs)[g.start - 1:g.end - 1] for g in self.groups
                          ) if hubs else ()
        return Query(memoryview(q).cast("B").cast("b", (1, len(q))), factor, baselines, asked,
                     per_group)


def _idf(total: int, n: int) -> float:
    """bm25's weight for a term in `n` of `total` chunks, as FTS5 computes it."""
    return max(1e-6, math.log((total - n + 0.5) / (n + 0.5)))


def _phrase(word: str) -> str:
    """`word` as an FTS5 string: whatever it holds (quotes, OR, NEAR) is matched as text."""
    return '"' + word.replace('"', '""') + '"'
