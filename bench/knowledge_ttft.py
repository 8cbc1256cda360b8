"""Time to first token of a chat turn in a knowledge bundle, with and without retrieval.

    .venv/bin/python -m bench.knowledge_ttft ARTIFACT [--reps 5] [--question TEXT ...]

Each repetition asks every question twice, once as is and once with `"knowledge": false`,
alternating which goes first; each request is a fresh one-turn chat whose question differs from
the previous request's, so only the system prompt's KV entries are reused, as for a user's
first message. Reports medians and the parts of the difference: retrieval (the query's
embedding, hybrid search, fitting the prompt: `usage.knowledge.search_ms`) and the passages'
extra prompt tokens, which the model must read before its first token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench.multiturn import free_port

QUESTIONS = [
    "How do I reset the router to factory settings?",
    "How many days of annual leave do new employees get?",
    "What is the warranty period?",
    "空气净化器的滤网多久更换一次？",
    "报销需要在多少天内提交？",
]


def ask(url: str, question: str, knowledge: bool) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": question}], "stream": True,
            "max_tokens": 8, "temperature": 0, "knowledge": knowledge,
            "stream_options": {"include_usage": True}}
    started, first, usage = time.perf_counter(), 0.0, {}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk["choices"]:
                if choice["delta"].get("content") and not first:
                    first = time.perf_counter() - started
    return {"ttft_s": first, "prompt_tokens": usage.get("prompt_tokens", 0),
            "search_ms": (usage.get("knowledge") or {}).get("search_ms")}


def run(artifact: Path, questions: list[str], reps: int) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([str(artifact), "--nobrowser", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    try:
        _wait_healthy(url, proc)
        ask(url, "warm up", True)  # first-request allocations, the embedder's context
        for rep in range(reps):
            for i, question in enumerate(questions):
                order = (True, False) if (rep + i) % 2 == 0 else (False, True)
                for knowledge in order:
                    runs[knowledge].append(ask(url, f"({rep}) {question}", knowledge))
    finally:
        proc.terminate()
        proc.wait(10)
    return {name: _summary(runs[flag]) for name, flag in (("with", True), ("without", False))}


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"the artifact exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the artifact never became healthy")


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ttfts = sorted(r["ttft_s"] for r in rows)
    searches = [r["search_ms"] for r in rows if r["search_ms"] is not None]
    return {"n": len(rows), "ttft_ms_p50": 1000 * statistics.median(ttfts),
            "ttft_ms_p95": 1000 * ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))],
            "prompt_tokens_p50": statistics.median(r["prompt_tokens"] for r in rows),
            "search_ms_p50": statistics.median(searches) if searches else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--question", action="append", help="(repeatable) instead of ours")
    args = parser.parse_args()
    result = run(args.artifact.absolute(), args.question or QUESTIONS, args.reps)
    for name, r in result.items():
        search = f", retrieval {r['search_ms_p50']:.1f} ms" if r["search_ms_p50"] else ""
        print(f"{name:>7} knowledge: TTFT p50 {r['ttft_ms_p50']:7.1f} ms, p95 "
              f"{r['ttft_ms_p95']:7.1f} ms, prompt {r['prompt_tokens_p50']:.0f} tokens"
              f"{search}  (n={r['n']})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
