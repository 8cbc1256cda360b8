"""One llama_decode step of N sequences, in-process, with the context the runtime makes.

    .venv/bin/python -m bench.batch_decode [--model GGUF] [--sequences 1,2,3,4,6,8]
                                           [--steps 30] [--reps 3] [--with NAME=DIR ...]
                                           [--rows 0,4,8]

No HTTP and no sampling: N short prompts are read into N sequences of one context
(runtime.llama.model.new_context: unified KV cache, flash attention, the lasting threadpool),
then --steps decode steps of one token per sequence are timed, and a 512-token prompt alone.
The median step of each rep is kept; the table has the median of the reps, and a second table
each build's step over the installed build's in the same rep (paired, for a noisy machine).
This is what a server's step costs inside llama.cpp, and where a kernel choice shows
(bench/results/small-batch-kernels.md).

`--with NAME=DIR` runs the same in a child process with DIR first on its import path: a folder
holding another `llama_cpp` package (for example llama-cpp-python's wheel from an older runtime
package, unzipped), so two builds of llama.cpp are compared side by side, in rotating order.
`--rows 0,4,8` runs the installed build again with LLAMABUNDLE_DOT_PRODUCT_ROWS set to each
(below how many rows small type-0 batches go to ggml's dot products instead of tinyBLAS; 0:
upstream's rule): "installed" is what this CPU's vendor gets (scripts/cpu_variants.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import machine, servers

PROMPT_TOKENS = 512


def measure(model_path: Path, sequences: list[int], steps: int, threads: int) -> dict[str, Any]:
    """One rep, in this process: the median step per N, and the prompt's time."""
    from runtime.llama import cpu
    from runtime.llama import model as llama_model
    from runtime.llama.bindings import llama_cpp

    backend = cpu.load()
    llama_cpp.llama_backend_init()
    model = llama_model.load_model(str(model_path), 0)
    tokenizer = llama_model.Tokenizer(model)

    def decode(ctx: Any, batch: Any, rows: list[tuple[int, int, int, bool]]) -> float:
        batch.n_tokens = len(rows)
        for i, (token, pos, seq, logits) in enumerate(rows):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, logits
        started = time.perf_counter()
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - started

    step_ms = {}
    for n in sequences:
        ctx = llama_model.new_context(model, 4096, threads, n_seq=n)
        batch = llama_cpp.llama_batch_init(PROMPT_TOKENS, 0, n)
        positions = []
        for seq in range(n):
            prompt = tokenizer.tokenize(f"({seq}) Tell me about topic number {seq}, please.")
            decode(ctx, batch, [(t, i, seq, i == len(prompt) - 1) for i, t in enumerate(prompt)])
            positions.append(len(prompt))
        times = []
        for step in range(steps):
            times.append(decode(ctx, batch, [(1000 + 7 * step + seq, positions[seq] + step, seq,
                                              True) for seq in range(n)]))
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        step_ms[n] = statistics.median(times[min(4, steps // 2):]) * 1000
    ctx = llama_model.new_context(model, 4096, threads)
    batch = llama_cpp.llama_batch_init(PROMPT_TOKENS, 0, 1)
    words = tokenizer.tokenize(" ".join(f"word{i} about things" for i in range(PROMPT_TOKENS)))
    prompt = words[:PROMPT_TOKENS]
    prompt_s = decode(ctx, batch, [(t, i, 0, i == len(prompt) - 1) for i, t in enumerate(prompt)])
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return {"backend": backend.describe(), "step_ms": step_ms,
            "prompt_tokens_per_s": len(prompt) / prompt_s}


ROWS = "LLAMABUNDLE_DOT_PRODUCT_ROWS"


def in_child(path: Path | None, rows: str | None, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [*([str(path)] if path else []), str(servers.REPO)])}
    env.pop(ROWS, None)
    if rows is not None:
        env[ROWS] = rows
    out = subprocess.run(
        [sys.executable, "-m", "bench.batch_decode", "--child", "--model", str(args.model),
         "--sequences", args.sequences, "--steps", str(args.steps),
         "--threads", str(args.threads)],
        env=env, check=True, capture_output=True, text=True, cwd=servers.REPO).stdout
    return json.loads(out.splitlines()[-1])


def table(results: dict[str, list[dict[str, Any]]], sequences: list[int]) -> str:
    names = list(results)
    lines = ["| llama_decode, ms per step | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for n in sequences:
        cells = []
        for name in names:
            values = [r["step_ms"][str(n)] for r in results[name]]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})")
        lines.append(f"| {n} sequence{'s' if n > 1 else ''} | " + " | ".join(cells) + " |")
    cells = [f"{statistics.median(r['prompt_tokens_per_s'] for r in results[name]):.0f} tok/s"
             for name in names]
    lines.append(f"| a {PROMPT_TOKENS}-token prompt | " + " | ".join(cells) + " |")
    backends = "; ".join(f"{name}: {results[name][0]['backend']}" for name in names)
    return "\n".join(lines) + f"\n\nCPU code: {backends}."


def paired(results: dict[str, list[dict[str, Any]]], sequences: list[int]) -> str:
    """Each build's step over the first build's of the same rep, median (min-max) of the reps.

    A rep runs every build one after another, so a slow spell of a shared machine (a
    neighbour's memory traffic) shows in both halves of a pair; the medians of the table above
    each keep their own spells, and on a noisy machine their ranges overlap."""
    first, *others = results
    if not others:
        return ""
    lines = [f"| step / {first}'s in the same rep | " + " | ".join(others) + " |",
             "|---|" + "---|" * len(others)]
    for n in sequences:
        cells = []
        for name in others:
            ratios = [r["step_ms"][str(n)] / base["step_ms"][str(n)]
                      for r, base in zip(results[name], results[first], strict=True)]
            cells.append(f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})")
        lines.append(f"| {n} sequence{'s' if n > 1 else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path,
                   default=servers.REPO / "models" / "gemma-3-270m-q4_k_m.gguf")
    p.add_argument("--sequences", default="1,2,3,4,6,8")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=machine.physical_cores())
    p.add_argument("--with", dest="others", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--rows", default="", metavar="N,N",
                   help=f"the installed build with {ROWS} set to each")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    sequences = [int(n) for n in args.sequences.split(",")]
    if args.child:
        print(json.dumps(measure(args.model, sequences, args.steps, args.threads)))
        return
    builds: dict[str, tuple[Path | None, str | None]] = {"installed": (None, None)}
    for other in args.others:
        name, _, folder = other.partition("=")
        builds[name] = (Path(folder).resolve(), None)
    for rows in filter(None, args.rows.split(",")):
        builds[f"rows<{rows}"] = (None, rows)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in builds}
    load = machine.load_average()
    for rep in range(args.reps):
        order = list(builds)[rep % len(builds):] + list(builds)[:rep % len(builds)]
        for name in order:
            results[name].append(in_child(*builds[name], args))
    print(table(results, sequences))
    if ratios := paired(results, sequences):
        print("\n" + ratios)
    print(f"\n{args.model.name}, {args.threads} threads, {args.steps} steps, {args.reps} reps; "
          f"load average {load} at the start, {machine.load_average()} at the end.")


if __name__ == "__main__":
    main()
