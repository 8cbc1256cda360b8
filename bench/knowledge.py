"""Knowledge bundles' figures: retrieval quality, build-time embedding speed, search latency,
artifact growth.

    python -m bench.knowledge [--threads 2] [--sizes 1000,10000,100000] [--out FILE.json]
                              [--parts quality,throughput,latency,growth]

Quality: the bilingual test set in tests/data/knowledge/ (documents in English and Chinese as
Markdown, text (one GBK-encoded), HTML and PDF; questions.json: each question with the document
and a phrase of the passage that answers it, including English questions answered by Chinese
text and the reverse, and questions the documents do not answer). A question is a hit at k when
one of the first k passages comes from its document and contains its phrase. Reported for full
text alone, vectors alone and hybrid (the runtime's ranking), plus how the calibrated threshold
treats answerable and unanswerable questions. The questions are split into a dev half and a
held-out half by a hash of their text (`split_of`): the fusion and the calibration were tuned
on dev only, so held-out shows whether a change overfits. Figures per half and per kind (en-en,
zh-zh, en-zh, zh-en); `--parts quality` prints them as a Markdown table on stderr.

Throughput: our build's batched embedding (the frozen runtime's `--embed-service`, in a
subprocess, as `build --knowledge` runs it) against llama.cpp's own batched embedding of the
same chunks with the same model and threads, as llama-cpp-python's
`Llama(embedding=True).embed(list)` drives it (llama.cpp's `llama-embedding` program is not
built here; that call packs sequences into one batch the same way), in interleaved pairs.

Latency: `BundledKnowledge.search` end to end (query embedding, full text, vectors, fusion,
threshold) on indexes of synthetic chunks of 1k, 10k and 100k (sentences drawn from the test
set's documents, so the vectors and terms look like real ones).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "knowledge"


def quality(threads: int = 2) -> dict[str, Any]:
    from bundler.knowledge.index import KnowledgeOptions, LoadedEmbedder, build_knowledge
    from runtime.knowledge.format import unpack
    from runtime.knowledge.search import FULL_TEXT_DEPTH, Index

    built = build_knowledge(KnowledgeOptions([DATA / "docs"], threads=threads))
    index = Index(unpack(built.section, "bench"))
    embedder = LoadedEmbedder(built.embedder, threads)
    questions = json.loads((DATA / "questions.json").read_text())
    answerable = questions["questions"]
    _check_passages(index, answerable)
    vectors = embedder.embed_queries([q["question"] for q in answerable])
    # Each ranking alone (full text: bm25's first FULL_TEXT_DEPTH), both fused, and both fused
    # with the calibrated floors applied before fusion and the thresholds after: what the
    # runtime's search() returns.
    modes: dict[str, Callable[[str, list[float]], list[int]]] = {
        "full_text": lambda q, v: index.full_text(q, FULL_TEXT_DEPTH),
        "vectors": lambda q, v: [s.chunk for s in index.rank(q, v, full_text=False)],
        "hybrid_unfiltered": lambda q, v: [s.chunk for s in index.rank(q, v)],
        "hybrid_floor": lambda q, v: [s.chunk for s in index.rank(q, v, floor=True)],
        "hybrid": lambda q, v: [s.chunk for s in index.rank(q, v, floor=True)
                                if _search(index, q, v)]}
    result: dict[str, Any] = {"documents": built.info["documents"],
                              "chunks": built.info["chunks"], "questions": len(answerable),
                              "threshold": built.info["threshold"],
                              "floor": built.info["floor"]}
    misses: list[str] = []
    for mode, ranking in modes.items():
        ranks = []
        for q, vector in zip(answerable, vectors, strict=True):
            rank = _rank_of(index, ranking(q["question"], vector), q)
            ranks.append(rank)
            if mode == "hybrid" and (rank is None or rank > 5):
                misses.append(f"{split_of(q['question'])}: {q['question']} (rank {rank})")
        result[mode] = {part: _metrics([r for r, q in zip(ranks, answerable, strict=True)
                                        if part == "all" or split_of(q["question"]) == part],
                                       [q["kind"] for q in answerable
                                        if part == "all" or split_of(q["question"]) == part])
                        for part in SPLITS}
    none = questions["unanswerable"]
    empty = [not _search(index, q, v) for q, v in zip(none, embedder.embed_queries(none),
                                                       strict=True)]
    result["unanswerable_returning_nothing"] = {
        part: round(statistics.mean(e for e, q in zip(empty, none, strict=True)
                                    if part == "all" or split_of(q) == part), 3)
        for part in SPLITS}
    result["hybrid_misses"] = misses
    result["self_test"] = built.info["self_test"]
    embedder.close()
    return result


SPLITS = ("dev", "held-out", "all")


def split_of(question: str) -> str:
    """'dev' or 'held-out', by a stable hash of the question's text: a question keeps its half
    when others are added. Fusion and calibration are tuned on dev only; held-out shows whether
    a change overfits the questions it was tuned on."""
    return "dev" if hashlib.sha256(question.encode()).digest()[0] % 2 == 0 else "held-out"


def _check_passages(index: Any, answerable: list[dict[str, str]]) -> None:
    """Every question's phrase must be in a chunk of its document, or the question could never
    be a hit (a typo in the test set would read as a retrieval miss)."""
    texts = [index.passage(chunk) for chunk in range(1, index.meta.count + 1)]
    for q in answerable:
        if not any(p.document == q["document"] and q["passage"] in p.text for p in texts):
            raise SystemExit(f"questions.json: {q['passage']!r} is in no chunk of "
                             f"{q['document']} ({q['question']})")


def _search(index: Any, query: str, vector: list[float], top_k: int = 5) -> list[Any]:
    return index.search(query, vector, top_k)


def _rank_of(index: Any, chunks: list[int], q: dict[str, str]) -> int | None:
    for rank, chunk in enumerate(chunks, 1):
        passage = index.passage(chunk)
        if passage.document == q["document"] and q["passage"] in passage.text:
            return rank
    return None


def _metrics(ranks: list[int | None], kinds: list[str] | None = None) -> dict[str, Any]:
    n = len(ranks) or 1
    out: dict[str, Any] = {
        "n": len(ranks), "hit@1": round(sum(r == 1 for r in ranks) / n, 3),
        "hit@5": round(sum(r is not None and r <= 5 for r in ranks) / n, 3),
        "mrr": round(sum(1 / r for r in ranks if r) / n, 3)}
    if kinds is not None:
        out["by_kind"] = {kind: _metrics([r for r, k in zip(ranks, kinds, strict=True)
                                          if k == kind])
                          for kind in sorted(set(kinds))}
    return out


def quality_table(result: dict[str, Any]) -> str:
    """The quality figures as a Markdown table: per mode and split, all kinds and each kind."""
    kinds = list(result["vectors"]["all"]["by_kind"])
    lines = ["| retrieval | split | n | hit@1 | hit@5 | MRR | "
             + " | ".join(f"{k} hit@1/@5" for k in kinds) + " |",
             "|---" * (6 + len(kinds)) + "|"]
    for mode in ("full_text", "vectors", "hybrid_floor", "hybrid"):
        for part in SPLITS:
            m = result[mode][part]
            lines.append(f"| {mode} | {part} | {m['n']} | {m['hit@1']} | {m['hit@5']} | "
                         f"{m['mrr']} | " + " | ".join(
                             f"{m['by_kind'][k]['hit@1']}/{m['by_kind'][k]['hit@5']}"
                             for k in kinds) + " |")
    none = result["unanswerable_returning_nothing"]
    lines.append("\nunanswerable returning nothing: "
                 + ", ".join(f"{part} {none[part]}" for part in SPLITS))
    return "\n".join(lines)


def throughput(threads: int = 2, chunks: int = 64, rounds: int = 5) -> dict[str, Any]:
    """Tokens per second embedding the test set's chunks (repeated up to `chunks`): ours (the
    frozen runtime in a subprocess, as `build --knowledge` runs it: requests, pipes and all) and
    llama-cpp-python's batched embed in-process, in `rounds` interleaved pairs (which goes first
    alternates). The ratio is taken pair by pair, since the machine is shared."""
    package = sys.modules.get("llama_cpp")
    if package is not None and not hasattr(package, "Llama"):
        # runtime.llama.bindings registered a bare package (no high-level layer): import the
        # whole one; its already-loaded ctypes module is reused, not loaded twice.
        del sys.modules["llama_cpp"]
    import llama_cpp

    from bundler.knowledge.chunk import chunk_document
    from bundler.knowledge.embedder import default_embedder
    from bundler.knowledge.index import LoadedEmbedder, indexed_text, read_all
    from runtime.llama import cpu

    gguf = default_embedder()
    ours = LoadedEmbedder(gguf, threads)
    documents, _ = read_all([DATA / "docs"], lambda total, label: lambda n: None)
    texts = [indexed_text(c) for d in documents for c in chunk_document(d, ours.counter())]
    texts = (texts * (chunks // len(texts) + 1))[:chunks]
    passages = [ours.passage_prefix + t for t in texts]
    tokens = sum(len(ours.tokens(p)) for p in passages)
    cpu.load()  # llama.cpp's CPU code for the peer, from its own folder only (as the runtime's)
    peer = llama_cpp.Llama(model_path=str(gguf), embedding=True, n_ctx=512, n_batch=512,
                           n_ubatch=512, n_seq_max=ours.n_seq_max,
                           pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, n_threads=threads,
                           n_threads_batch=threads, verbose=False)
    peer.embed(passages[:2])
    ours.embed_passages(texts[:2], lambda n: None)
    runs = {"ours": lambda: ours.embed_passages(texts, lambda n: None),
            "llama_cpp_python": lambda: peer.embed(passages, normalize=True)}
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    for pair in range(rounds):
        for name in (list(runs) if pair % 2 == 0 else list(runs)[::-1]):
            start = time.perf_counter()
            runs[name]()
            speeds[name].append(tokens / (time.perf_counter() - start))
    ours.close()
    ratios = sorted(a / b for a, b in zip(speeds["ours"], speeds["llama_cpp_python"],
                                          strict=True))
    return {"chunks": len(texts), "tokens": tokens, "pairs": rounds, "cpu": ours.cpu,
            "ours_tokens_per_s": round(statistics.median(speeds["ours"])),
            "llama_cpp_python_tokens_per_s": round(statistics.median(
                speeds["llama_cpp_python"])),
            "ratio": round(statistics.median(ratios), 3),
            "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def latency(threads: int = 2, sizes: tuple[int, ...] = (1000, 10000, 100000),
            queries: int = 60) -> dict[str, Any]:
    """search() p50/p95 in ms, query embedding included, on synthetic indexes of each size."""
    import numpy as np

    from bench.knowledge_latency import synthetic_index
    from bundler.knowledge.embedder import default_embedder
    from bundler.knowledge.index import LoadedEmbedder
    from runtime.knowledge.format import unpack
    from runtime.knowledge.index import QUERY_THREADS, BundledKnowledge
    from runtime.knowledge.search import Index
    from runtime.llama import cpu
    from runtime.llama.bindings import llama_cpp
    from runtime.llama.embedder import load_embedding_model

    gguf = default_embedder()
    embedder = LoadedEmbedder(gguf, threads)
    cpu.load()
    llama_cpp.llama_backend_init()
    model = load_embedding_model(str(gguf))  # in-process, as the artifact's search runs it
    questions = json.loads((DATA / "questions.json").read_text())["questions"]
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for size in sizes:
        section = synthetic_index(size, embedder, rng)
        knowledge = BundledKnowledge(Index(unpack(section, "bench")), model,
                                     min(threads, QUERY_THREADS), {})  # as the runtime does
        asked = [questions[i % len(questions)]["question"] for i in range(queries)]
        out[str(size)] = _latency_of(knowledge, embedder, asked) | {
            "section_mb": round(len(section) / 1e6, 2)}
        knowledge.embedder.close()
    embedder.close()
    llama_cpp.llama_model_free(model)
    return out


def _latency_of(knowledge: Any, embedder: Any, asked: list[str]) -> dict[str, float]:
    """search() end to end; the query's embedding alone; the index's search alone."""
    knowledge.search(asked[0], 5)
    total = _times(lambda q: knowledge.search(q, 5), asked)
    embed = _times(lambda q: knowledge.embedder.embed(
        knowledge._tokens(embedder.query_prefix + q, truncate=True)), asked)
    vectors = dict(zip(asked, embedder.embed_queries(asked), strict=True))
    index = _times(lambda q: knowledge.index.search(q, vectors[q], 5), asked)
    return {"p50_ms": total[0], "p95_ms": total[1], "query_embedding_p50_ms": embed[0],
            "index_search_p50_ms": index[0], "index_search_p95_ms": index[1]}


def _times(call: Callable[[str], Any], queries: list[str]) -> tuple[float, float]:
    samples = []
    for q in queries:
        start = time.perf_counter()
        call(q)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return (round(statistics.median(samples), 2),
            round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 2))


def growth(built: Any | None = None) -> dict[str, Any]:
    """How much --knowledge adds to an artifact, against the embedder's size plus the text."""
    from bundler.knowledge.index import KnowledgeOptions, build_knowledge, read_all

    built = built or build_knowledge(KnowledgeOptions([DATA / "docs"]))
    documents, _ = read_all([DATA / "docs"], lambda total, label: lambda n: None)
    text = sum(len(b.text.encode()) for d in documents for b in d.blocks)
    embedder = built.embedder.stat().st_size
    return {"text_bytes": text, "embedder_bytes": embedder,
            "index_bytes": len(built.section),
            "added_bytes_over_embedder_plus_text": len(built.section) - text}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.knowledge",
                                description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--parts", default="quality,throughput,latency,growth")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    results: dict[str, Any] = {"threads": args.threads}
    parts = args.parts.split(",")
    if "quality" in parts:
        results["quality"] = quality(args.threads)
        print(quality_table(results["quality"]), file=sys.stderr)
    if "throughput" in parts:
        results["throughput"] = throughput(args.threads)
    if "latency" in parts:
        sizes = tuple(int(s) for s in args.sizes.split(","))
        results["latency"] = latency(args.threads, sizes)
    if "growth" in parts:
        results["growth"] = growth()
    text = json.dumps(results, indent=1, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
