"""End to end: does the answer cite the right document? Asks a knowledge artifact every
question of the bilingual test set through /v1/chat/completions (greedy, 80 tokens).

    .venv/bin/python -m bench.knowledge_cite ARTIFACT [--questions PATH] [--limit N] [--source]

Build the artifact from the test set's documents first, e.g.
    llamabundle build qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
        --knowledge tests/data/knowledge/docs -o kb.llamabundle

`--source` serves the artifact with this checkout's runtime (`python -m runtime ARTIFACT`), to
measure a change to the prompt without re-freezing and rebuilding.

Per answerable question, the [n] of the answer that name a source it was given:
- `sourced`: the expected document is among the sources the prompt held (retrieval's share);
- `cites_right`: some [n] is a passage of the expected document (issue #12's goal: >= 90 %);
- `first_right`: the first [n] is;
- `only_right`: it cites, and every [n] is (an answer that also cites a wrong document fails);
- `uncited`: no [n] at all; `bad_number`: an [n] with no such source.
Per unanswerable question: `no_sources` (retrieval put nothing in the prompt), `cited` (it
cited anything), `says_not_covered` (the answer says the documents do not cover it), and
`ok`, all three right. Figures are given over all questions, per kind, and per `split` where
the questions have one (a dev set to tune on and a held-out set to report).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.knowledge_ttft import _wait_healthy
from bench.multiturn import free_port

DEFAULT_QUESTIONS = Path(__file__).parent.parent / "tests/data/knowledge/questions.json"
ANSWERABLE = ("sourced", "cites_right", "first_right", "only_right", "uncited", "bad_number")
UNANSWERABLE = ("no_sources", "cited", "says_not_covered", "ok")
# How the instruction asks the model to decline, and the ways the 0.5B model words it.
NOT_COVERED = re.compile(
    r"(do|does|did)(n['’]t| not) (cover|mention|contain|include|provide|address|say|answer|"
    r"have)|not (covered|mentioned|included|provided|addressed|found)|no (information|mention)"
    r"|没有涉及|未涉及|不涉及|没有提到|未提及|没有提及|没有相关|未包含|没有包含|无法回答",
    re.IGNORECASE)


def ask(url: str, question: str) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": question}], "temperature": 0,
            "max_tokens": 80}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=600)
    r.raise_for_status()
    return r.json()


def judge(answer: dict[str, Any], document: str | None) -> dict[str, Any]:
    text = answer["choices"][0]["message"]["content"]
    by_id = {s["id"]: s["document"] for s in answer["sources"]}
    numbers = [int(n) for n in re.findall(r"\[(\d+)\]", text)]
    cited = [by_id[n] for n in numbers if n in by_id]
    return {"sourced": document in by_id.values(),
            "cites_right": document in cited,
            "first_right": bool(cited) and cited[0] == document,
            "only_right": bool(cited) and set(cited) == {document},
            "uncited": not numbers, "bad_number": any(n not in by_id for n in numbers),
            "cited": bool(numbers), "no_sources": not by_id,
            "says_not_covered": bool(NOT_COVERED.search(text)),
            "answer": text, "sources": list(by_id.values())}


def serve(artifact: Path, port: int, source: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "runtime", str(artifact)] if source else [str(artifact)]
    return subprocess.Popen([*command, "--nobrowser", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(artifact: Path, questions: dict[str, Any], limit: int | None,
        source: bool = False) -> dict[str, Any]:
    port = free_port()
    proc = serve(artifact, port, source)
    url = f"http://127.0.0.1:{port}"
    answerable = _sample(questions["questions"], limit)
    # An unanswerable question is a string, or an object with "question" (and "split").
    unanswerable = [q if isinstance(q, dict) else {"question": q}
                    for q in _sample(questions.get("unanswerable", []), limit)]
    try:
        _wait_healthy(url, proc)
        rows = [{"kind": q["kind"], "split": q.get("split"), "question": q["question"],
                 "document": q["document"]} | judge(ask(url, q["question"]), q["document"])
                for q in answerable]
        none = [{"split": q.get("split"), "question": q["question"]}
                | _decline(judge(ask(url, q["question"]), None)) for q in unanswerable]
    finally:
        proc.terminate()
        proc.wait(10)
    splits = sorted({r["split"] for r in rows + none if r["split"]})
    return {"answerable": _rates(rows, ANSWERABLE),
            "unanswerable": _rates(none, UNANSWERABLE),
            "by_kind": {kind: _rates([r for r in rows if r["kind"] == kind],
                                     ("sourced", "cites_right", "first_right"))
                        for kind in sorted({r["kind"] for r in rows})},
            "by_split": {split: {"answerable": _rates([r for r in rows if r["split"] == split],
                                                      ANSWERABLE),
                                 "unanswerable": _rates([r for r in none
                                                         if r["split"] == split], UNANSWERABLE)}
                         for split in splits},
            "rows": rows, "unanswerable_rows": none}


def _decline(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"ok": row["no_sources"] and not row["cited"] and row["says_not_covered"]}


def _sample(items: list[Any], n: int | None) -> list[Any]:
    """n items spread evenly over the list (every kind of question), or all of them."""
    if n is None or n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]


def _rates(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {"n": len(rows)} | {k: round(statistics.mean(float(r[k]) for r in rows), 3)
                               if rows else None for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--limit", type=int, help="N questions of each list, spread evenly")
    parser.add_argument("--source", action="store_true",
                        help="serve with this checkout's runtime (python -m runtime)")
    parser.add_argument("--out", type=Path, help="write every answer here as JSON")
    args = parser.parse_args()
    result = run(args.artifact.absolute(), json.loads(args.questions.read_text()), args.limit,
                 args.source)
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    for part in ("answerable", "unanswerable"):
        print(part, json.dumps(result[part]))
    for kind, rates in result["by_kind"].items():
        print(f"  {kind}: {json.dumps(rates)}")
    for split, parts in result["by_split"].items():
        for part, rates in parts.items():
            print(f"  split {split} {part}: {json.dumps(rates)}")


if __name__ == "__main__":
    main()
