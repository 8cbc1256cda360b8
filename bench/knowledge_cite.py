"""End to end: does the answer cite the right document? Asks a knowledge artifact every
question of the bilingual test set through /v1/chat/completions (greedy, 80 tokens).

    .venv/bin/python -m bench.knowledge_cite ARTIFACT [--questions PATH] [--limit N]

Build the artifact from the test set's documents first, e.g.
    llamabundle build qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
        --knowledge tests/data/knowledge/docs -o kb.llamabundle

Per question: `sourced`, the expected document is among the sources the prompt held;
`cited`, the answer cites [n] at all; `cited_right`, the first [n] it cites is a passage of the
expected document (the goal: >= 90 %). Per unanswerable question: `no_sources`, nothing was
put in the prompt.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

import httpx

from bench.knowledge_ttft import _wait_healthy
from bench.multiturn import free_port

DEFAULT_QUESTIONS = Path(__file__).parent.parent / "tests/data/knowledge/questions.json"


def ask(url: str, question: str) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": question}], "temperature": 0,
            "max_tokens": 80}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=600)
    r.raise_for_status()
    return r.json()


def judge(answer: dict[str, Any], document: str | None) -> dict[str, Any]:
    text = answer["choices"][0]["message"]["content"]
    by_id = {s["id"]: s["document"] for s in answer["sources"]}
    cited = [by_id[int(n)] for n in re.findall(r"\[(\d+)\]", text) if int(n) in by_id]
    return {"sourced": document in by_id.values(), "cited": bool(cited),
            "cited_right": bool(cited) and cited[0] == document,
            "no_sources": not by_id, "answer": text, "sources": list(by_id.values())}


def run(artifact: Path, questions: dict[str, Any], limit: int | None) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([str(artifact), "--nobrowser", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    answerable = _sample(questions["questions"], limit)
    unanswerable = _sample(questions.get("unanswerable", []), limit)
    try:
        _wait_healthy(url, proc)
        rows = [{"kind": q["kind"], "question": q["question"], "document": q["document"]}
                | judge(ask(url, q["question"]), q["document"]) for q in answerable]
        none = [{"question": q if isinstance(q, str) else q["question"]}
                | judge(ask(url, q if isinstance(q, str) else q["question"]), None)
                for q in unanswerable]
    finally:
        proc.terminate()
        proc.wait(10)
    return {"answerable": _rates(rows, ("sourced", "cited", "cited_right")),
            "by_kind": {kind: _rates([r for r in rows if r["kind"] == kind],
                                     ("sourced", "cited_right"))
                        for kind in sorted({r["kind"] for r in rows})},
            "unanswerable": _rates(none, ("no_sources", "cited")),
            "rows": rows, "unanswerable_rows": none}


def _sample(items: list[Any], n: int | None) -> list[Any]:
    """n items spread evenly over the list (every kind of question), or all of them."""
    if n is None or n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]


def _rates(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {"n": len(rows)} | {k: statistics.mean(float(r[k]) for r in rows) if rows else None
                               for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--limit", type=int, help="N questions of each list, spread evenly")
    parser.add_argument("--out", type=Path, help="write every answer here as JSON")
    args = parser.parse_args()
    result = run(args.artifact.absolute(), json.loads(args.questions.read_text()), args.limit)
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    for part in ("answerable", "unanswerable"):
        print(part, json.dumps(result[part]))
    for kind, rates in result["by_kind"].items():
        print(f"  {kind}: {json.dumps(rates)}")


if __name__ == "__main__":
    main()
