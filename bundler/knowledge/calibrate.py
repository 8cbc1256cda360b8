"""The build's retrieval self-test, and the relevance threshold calibrated from the corpus.

An embedder's cosines sit in its own band (e5's between ~0.7 and ~0.95), different per model and
per corpus, so "nothing relevant" cannot be a constant. We measure two distributions on the
index just built, through the same search the runtime runs:

- questions the documents answer: a sentence of a chunk asked as a query (its first one that
  says something), which must find that chunk (hit@5 is the self-test figure); its cosine with
  the chunk is what "relevant" looks like in this corpus;
- questions they do not: everyday questions in English and Chinese on unrelated subjects; the
  best cosine each reaches in the corpus is what noise looks like.

Relevance is "lift", the cosine above the passage group's baseline (runtime/knowledge/search.py),
and both distributions are taken per script group (CJK or not; see `calibrate`). From them (see
`choose`), per group: the threshold, the noise ceiling (unrelated questions' 90th percentile: a
question is answered only when some passage beats its group's), and the floor (their median: a
passage below its group's is never returned). The report keeps both distributions' quantiles so
`inspect` shows how clear the separation was.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bundler.knowledge.chunk import Chunk, split_sentences
from runtime.knowledge.search import Index
from runtime.knowledge.terms import terms

MAX_PROBES = 200
MIN_PROBE_TERMS = 4
MAX_PROBE_CHARS = 160
MIN_GROUP = 10  # chunks
NOISE_KEPT = 0.10  # the share of off-topic questions a threshold may let through

# Questions a user might ask that a document collection is unlikely to answer. The corpus may
# happen to cover one or two: the threshold uses a high quantile, not the maximum.
OFF_TOPIC = [
    "What is the recipe for a chocolate cake?", "Who won the football World Cup in 2018?",
    "How far is the Moon from the Earth?", "What is the capital of Australia?",
    "How do I train my puppy to sit?", "What year did the Roman Empire fall?",
    "Which planet has the most moons?", "How many calories are in a banana?",
    "Who painted the Mona Lisa?", "What is the best time to plant tomatoes?",
    "How do I tie a bow tie?", "What is the tallest mountain in Africa?",
    "Recommend a good science fiction novel.", "How do whales sleep?",
    "What causes the northern lights?", "Tell me a joke about cats.",
    "How long should I boil an egg?", "What is the population of Brazil?",
    "Who wrote Pride and Prejudice?", "How do I improve my chess opening?",
    "今天天气怎么样？", "红烧肉怎么做？", "谁是唐朝的第一位皇帝？", "长城有多长？",
    "怎样训练小狗坐下？", "月亮离地球有多远？", "世界上最高的山是哪座？", "推荐一部好看的电影。",
    "熊猫每天吃多少竹子？", "如何学好书法？", "足球世界杯每几年举办一次？", "苹果有什么营养？",
    "火星上有水吗？", "怎么种植西红柿？", "李白最有名的诗是哪一首？", "感冒了应该吃什么？",
    "飞机为什么能飞起来？", "太阳系有几颗行星？", "怎样煮出好吃的米饭？", "海水为什么是咸的？",
]


@dataclass
class Levels:
    """One script group's calibration (the runtime's Group.threshold and Group.floor)."""

    name: str
    threshold: float
    floor: float
    positive: list[float]  # lift of the group's probes with their own chunk
    negative: list[float]  # best lift in the group of each off-topic question

    def report(self) -> dict[str, Any]:
        return {"threshold": round(self.threshold, 4), "floor": round(self.floor, 4),
                "relevant_lift": _quantiles(self.positive),
                "unrelated_lift": _quantiles(self.negative)}


@dataclass
class Calibration:
    groups: list[Levels]  # in the index's group order
    probes: int
    hit_at_5: float
    relevant_kept: float  # probes whose lift reaches their group's threshold
    unrelated_kept: float  # off-topic questions reaching some group's threshold (answered)

    def report(self) -> dict[str, Any]:
        return {"probes": self.probes, "hit_at_5": round(self.hit_at_5, 4),
                "groups": {g.name: g.report() for g in self.groups},
                "relevant_kept": round(self.relevant_kept, 4),
                "unrelated_kept": round(self.unrelated_kept, 4)}


def calibrate(index: Index, chunks: Sequence[Chunk],
              embed_queries: Callable[[list[str]], list[list[float]]]) -> Calibration:
    """Each script group's levels from its own probes and the off-topic questions' best lift in
    it: lifts into a group whose passages resemble each other more (Chinese ones, for e5-small)
    run lower for relevant and unrelated questions alike, so one level for all would cut
    questions answered in that group (en->zh ones first) or let noise through in the other."""
    probes = probe_queries(chunks)
    vectors = embed_queries([query for _, query in probes]) if probes else []
    hits, positive, verbatim = 0, [], set()
    for (chunk, query), vector in zip(probes, vectors, strict=True):
        ranked = index.rank(query, vector)
        hits += chunk in [s.chunk for s in ranked[:5]]
        positive.append((chunk, index.lift(index.prepare(vector), chunk)))
        verbatim |= {s.chunk for s in ranked if s.verbatim and s.chunk == chunk}
    off_topic = [index.prepare(v) for v in embed_queries(OFF_TOPIC)]
    best = [[index.nearest_in(q, i, 1)[0][1] for i in range(len(index.groups))]
            for q in off_topic]
    # A group of a few chunks has no baseline worth the name (one chunk's lift is always 0): it
    # takes the levels calibrated over all groups together.
    own = [i for i, g in enumerate(index.groups) if g.end - g.start >= MIN_GROUP]
    quantile = noise_quantile([[b[i] for i in own] for b in best])
    pooled = choose([lift for _, lift in positive], [max(b) for b in best], 1 - NOISE_KEPT)
    groups = []
    for i, g in enumerate(index.groups):
        mine = [lift for chunk, lift in positive if g.start <= chunk < g.end]
        negative = [b[i] for b in best]
        threshold, floor = choose(mine, negative, quantile) if i in own else pooled
        groups.append(Levels(g.name, threshold, floor, mine, negative))
    levels = {g.name: g for g in groups}
    kept = sum(lift >= levels[index.group(chunk).name].threshold or chunk in verbatim
               for chunk, lift in positive)
    answered = sum(any(b[i] >= g.threshold for i, g in enumerate(groups)) for b in best)
    return Calibration(groups, len(probes), hits / len(probes) if probes else 1.0,
                       kept / len(positive) if positive else 1.0, answered / len(best))


def probe_queries(chunks: Sequence[Chunk]) -> list[tuple[int, str]]:
    """(chunk id, query) for up to MAX_PROBES chunks spread evenly over the corpus."""
    step = max(1, len(chunks) / MAX_PROBES)
    out = []
    for i in range(min(len(chunks), MAX_PROBES)):
        chunk_id = int(i * step) + 1
        sentence = next((s for s in split_sentences(chunks[chunk_id - 1].text)
                         if len(terms(s)) >= MIN_PROBE_TERMS), None)
        if sentence:
            out.append((chunk_id, sentence[:MAX_PROBE_CHARS]))
    return out


def noise_quantile(best: list[list[float]]) -> float:
    """Which quantile of each group's off-topic lifts is its noise ceiling, given each off-topic
    question's best lift per group: the lowest (from the 90th percentile up) at which no more
    than NOISE_KEPT of the questions reach some group's ceiling. With one group that is its 90th
    percentile; with two, each at its own 90th would let through up to a tenth per group (0.15
    of them instead of 0.10 on the test set's corpus)."""
    n = len(best)
    columns = [sorted(column) for column in zip(*best, strict=True)]
    start = int((1 - NOISE_KEPT) * n)
    for k in range(start, n):
        ceilings = [column[k] for column in columns]
        answered = sum(any(v >= c for v, c in zip(b, ceilings, strict=True)) for b in best)
        if answered <= round(NOISE_KEPT * n):
            return (k + 0.5) / n  # _quantile's index for it is k
    return 1.0


def choose(positive: list[float], negative: list[float],
           quantile: float) -> tuple[float, float]:
    """(threshold, floor). The threshold is the unrelated questions' `quantile` (about the
    90th percentile, see noise_quantile); the floor is their median, never above the
    threshold. It used to drop to midway between that and the probes' 10th percentile when the
    corpus's own probes did not clear it; on READMEs from PyPI (issue #24) that let 82 % of the
    off-topic questions through. The probes are sentences of the documents, and a question
    asked in a document's own words no longer needs the threshold: it is a candidate whatever
    its lift (runtime/knowledge/search.py's VERBATIM), so the threshold only has to keep noise
    out. `positive` is kept for the report."""
    del positive
    if not negative:
        return 0.0, 0.0
    threshold = _quantile(negative, quantile)
    return threshold, min(threshold, statistics.median(negative))


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"p10": round(_quantile(values, 0.10), 4),
            "p50": round(statistics.median(values), 4),
            "p90": round(_quantile(values, 0.90), 4)}
