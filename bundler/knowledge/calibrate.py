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
less the passage's hub score for the query's script (its mean lift over the off-topic questions
of that script; `hub_scores`). The unrelated questions' best lifts are taken per query script
and script group (CJK or not; see `calibrate`). From them (see `choose`), per query script and
group: the threshold, the noise ceiling (the unrelated questions' 95th percentile or above: a
question is answered only when some passage beats its group's for the question's script), and
the floor (their median: a passage below it is never returned). The report keeps the
distributions' quantiles so `inspect` shows how clear the separation was.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bundler.knowledge.chunk import Chunk, split_sentences
from runtime.knowledge.search import Index
from runtime.knowledge.terms import script, terms

MAX_PROBES = 200
MIN_PROBE_TERMS = 4
MAX_PROBE_CHARS = 160
MIN_GROUP = 10  # chunks
# The share of off-topic questions a threshold may let through, per query script. With hub
# scores taken off, bench.knowledge's 20 unanswerable questions (its dev half: 12) are judged
# closer to the calibration's: with 20 calibration questions a script, the ceiling (their
# highest) let 4 of them through (dev: 3); with 40 at 0.10, 1 (dev: 1); with 40 at 0.05, none.
NOISE_KEPT = 0.05

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
    # 20 more of each (see NOISE_KEPT): the ceiling is taken per query script, from its half
    "How tall is the Eiffel Tower?", "What do koalas eat?", "Who invented the light bulb?",
    "How do I make pancakes fluffy?", "When did the Titanic sink?", "Why is the sky blue?",
    "How many strings does a violin have?", "What is the largest desert in the world?",
    "How do bees make honey?", "Who was the first person to walk on the Moon?",
    "What language is spoken in Brazil?", "How do I grow basil indoors?",
    "What is the deepest point in the ocean?", "Who discovered gravity?",
    "How often should I water a cactus?", "What is a good stretching routine for runners?",
    "How many hearts does an octopus have?", "What is the oldest city in Europe?",
    "How do I remove a coffee stain from a shirt?", "Which country has the most islands?",
    "西湖在哪个城市？", "怎样包粽子？", "孔子是哪个朝代的人？", "蜜蜂是怎么酿蜜的？",
    "一年有多少个节气？", "如何养好金鱼？", "珠穆朗玛峰有多高？", "茶叶应该怎么保存？",
    "为什么天空是蓝色的？", "怎样学会游泳？", "中秋节为什么吃月饼？", "骆驼的驼峰里装的是什么？",
    "哪个国家的人口最多？", "如何缓解失眠？", "红楼梦的作者是谁？", "长江的源头在哪里？",
    "企鹅生活在哪里？", "怎么做番茄炒蛋？", "彩虹是怎么形成的？", "马拉松全程有多少公里？",
]


@dataclass
class Levels:
    """One script group's calibration (the runtime's Group.threshold, floor and levels)."""

    name: str
    threshold: float  # the highest of the per-script thresholds below (what `info` shows)
    floor: float  # the lowest of the per-script floors
    positive: list[float]  # lift of the group's probes with their own chunk
    negative: dict[str, list[float]]  # per query script: each off-topic question's best lift
    levels: dict[str, list[float]] = field(default_factory=dict)  # script: [threshold, floor]

    def report(self) -> dict[str, Any]:
        return {"threshold": round(self.threshold, 4), "floor": round(self.floor, 4),
                "by_query": {k: [round(v, 4) for v in levels]
                             for k, levels in self.levels.items()},
                "relevant_lift": _quantiles(self.positive),
                "unrelated_lift": {k: _quantiles(v) for k, v in self.negative.items()}}


@dataclass
class Calibration:
    groups: list[Levels]  # in the index's group order
    hubs: dict[str, list[float]]  # per query script: each chunk's hub score, in chunk order
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
    """The hub scores (installed in `index`), then each script group's levels for a query of
    each script, from the off-topic questions of that script: lifts into a group whose passages
    resemble each other more (Chinese ones, for e5-small) run lower for relevant and unrelated
    questions alike, and so do a Chinese question's into English passages, so one level for all
    would cut questions answered in that group (en->zh ones first) or asked in the other
    language (zh->en), or let noise through elsewhere."""
    asked = [script(q) for q in OFF_TOPIC]
    raw = np.array([index.lifts(index.prepare(v)) for v in embed_queries(OFF_TOPIC)])
    hubs, best = hub_scores(raw, asked, index.starts + [index.meta.count + 1])
    index.set_hubs({k: v.tolist() for k, v in hubs.items()})
    # A group of a few chunks has no baseline worth the name (one chunk's lift is always 0): it
    # takes the levels calibrated over all groups together.
    own = [i for i, g in enumerate(index.groups) if g.end - g.start >= MIN_GROUP]
    levels: dict[str, list[tuple[float, float]]] = {}
    for kind in sorted(set(asked)):
        rows = [b for b, a in zip(best, asked, strict=True) if a == kind]
        quantile = noise_quantile([[b[i] for i in own] for b in rows])
        pooled = choose([], [max(b) for b in rows], 1 - NOISE_KEPT)
        levels[kind] = [choose([], [b[i] for b in rows], quantile) if i in own else pooled
                        for i in range(len(index.groups))]
    probes = probe_queries(chunks)
    vectors = embed_queries([query for _, query in probes]) if probes else []
    hits, positive, verbatim = 0, [], set()
    for (chunk, query), vector in zip(probes, vectors, strict=True):
        ranked = index.rank(query, vector)
        hits += chunk in [s.chunk for s in ranked[:5]]
        positive.append((chunk, script(query),
                         index.lift(index.prepare(vector, script(query)), chunk)))
        verbatim |= {s.chunk for s in ranked if s.verbatim and s.chunk == chunk}
    groups = []
    for i, g in enumerate(index.groups):
        mine = [lift for chunk, _, lift in positive if g.start <= chunk < g.end]
        by_query = {kind: list(v[i]) for kind, v in levels.items()}
        groups.append(Levels(g.name, max(t for t, _ in by_query.values()),
                             min(f for _, f in by_query.values()), mine,
                             {kind: [b[i] for b, a in zip(best, asked, strict=True) if a == kind]
                              for kind in levels}, by_query))
    kept = sum(lift >= levels[kind][bisect.bisect_right(index.starts, chunk) - 1][0]
               or chunk in verbatim for chunk, kind, lift in positive)
    answered = sum(any(b[i] >= levels[a][i][0] for i in range(len(index.groups)))
                   for b, a in zip(best, asked, strict=True))
    return Calibration(groups, {k: v.tolist() for k, v in hubs.items()}, len(probes),
                       hits / len(probes) if probes else 1.0,
                       kept / len(positive) if positive else 1.0, answered / len(best))


def hub_scores(raw: np.ndarray, asked: list[str], bounds: list[int]
               ) -> tuple[dict[str, np.ndarray], list[list[float]]]:
    """Each chunk's hub score per query script: its mean lift over the off-topic questions of
    that script (`raw`: one row of lifts per question, `asked`: each one's script); and each
    off-topic question's best lift per group once the hub scores are taken off, each question
    left out of the scores taken off its own lifts (else it would measure itself against its
    own average, and look like less noise than a new question is).

    A hub is a passage near every question: a short line ("pip install cn2an -U"), a list of
    links, a code sample with a few Chinese comments. On twelve PyPI READMEs (issue #24), 15 of
    the 20 English off-topic questions had the same list of links as their best passage and 19
    of the 20 Chinese ones one of two such passages; the threshold was their lift, above that
    of the passages answering questions asked in Chinese about English text (lift ~0.05-0.07
    against a Chinese noise ceiling of 0.09). Taking each passage's own average off (the
    "hubness" correction of cross-lingual retrieval, as CSLS does) leaves what is specific to a
    question; per query script, since a Chinese question's lifts into English passages and an
    English one's differ."""
    hubs: dict[str, np.ndarray] = {}
    best: list[list[float]] = [[] for _ in asked]
    for kind in sorted(set(asked)):
        rows = [i for i, a in enumerate(asked) if a == kind]
        total = raw[rows].sum(axis=0)
        hubs[kind] = total / len(rows)
        for i in rows:
            others = (total - raw[i]) / (len(rows) - 1) if len(rows) > 1 else hubs[kind]
            corrected = raw[i] - others
            best[i] = [float(corrected[a - 1:b - 1].max()) for a, b in itertools.pairwise(bounds)]
    return hubs, best


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
    question's best lift per group: the lowest (from the 1 - NOISE_KEPT quantile up) at which no
    more than NOISE_KEPT of the questions reach some group's ceiling. With one group that is its
    1 - NOISE_KEPT quantile; with two, each at its own would let through up to that share per
    group."""
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
    """(threshold, floor). The threshold is the unrelated questions' `quantile` (the 95th
    percentile or above, see noise_quantile); the floor is their median, never above the
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
