"""Time to first token across the turns of one growing chat (KV-cache prefix reuse).

    .venv/bin/python -m bench.multiturn [--artifact PATH] [--turns 8] [--reps 3]

Each repetition starts a new conversation (its first message differs, so nothing is reused
from the previous one) and reports the TTFT of every turn; the goal is turn 8 <= 1.5x turn 1.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx

QUESTIONS = ["Tell me about the moon.", "Why is it bright?", "How far away is it?",
             "Who walked on it?", "When was that?", "What did they bring back?",
             "Could people live there?", "Summarise our chat."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ttft(url: str, messages: list[dict[str, str]]) -> tuple[float, str, int]:
    body = {"messages": messages, "stream": True, "max_tokens": 48, "temperature": 0,
            "stream_options": {"include_usage": True}}
    started, first, text, prompt_tokens = time.perf_counter(), 0.0, "", 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                prompt_tokens = chunk["usage"]["prompt_tokens"]
            for choice in chunk["choices"]:
                if choice["delta"].get("content") and not first:
                    first = time.perf_counter() - started
                text += choice["delta"].get("content") or ""
    return first, text, prompt_tokens


def run(artifact: Path, turns: int, reps: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([str(artifact), "--nobrowser", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        ttft(url, [{"role": "user", "content": "warm up"}])  # first-request allocations
        table: list[list[float]] = []
        prompts: list[int] = []
        for rep in range(reps):
            messages: list[dict[str, str]] = []
            row = []
            for turn in range(turns):
                question = QUESTIONS[turn % len(QUESTIONS)]
                if turn == 0:
                    question = f"(conversation {rep}) {question}"
                messages.append({"role": "user", "content": question})
                seconds, answer, n_prompt = ttft(url, messages)
                messages.append({"role": "assistant", "content": answer})
                row.append(seconds)
                if rep == 0:
                    prompts.append(n_prompt)
            table.append(row)
    finally:
        proc.terminate()
        proc.wait(10)
    medians = [statistics.median(col) for col in zip(*table, strict=True)]
    ratios = [row[-1] / row[0] for row in table]
    return {"ttft_s_by_turn": medians, "prompt_tokens_by_turn": prompts,
            "turn_last_over_first": {"median": statistics.median(ratios),
                                     "min": min(ratios), "max": max(ratios)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path,
                        default=Path("gemma-3-270m-q4_k_m.llamabundle").absolute())
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    result = run(args.artifact, args.turns, args.reps)
    for turn, (s, n) in enumerate(zip(result["ttft_s_by_turn"], result["prompt_tokens_by_turn"],
                                      strict=True), 1):
        print(f"turn {turn}: TTFT {s * 1000:7.1f} ms  (prompt {n} tokens)")
    r = result["turn_last_over_first"]
    print(f"turn {args.turns} / turn 1: {r['median']:.2f}x "
          f"(min {r['min']:.2f}, max {r['max']:.2f})")


if __name__ == "__main__":
    main()
