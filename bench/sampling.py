"""What picking one token costs on the CPU, ours against llama-server's chain (issue #25).

    .venv/bin/python -m bench.sampling [--model GGUF ...] [--calls 300]

In-process, on one position's logits: `llama_sampler_sample` with the chain the decoder makes
for a greedy request (runtime/llama/decoder.py: greedy alone), and with the chain llama-server
makes for the benchmark's requests (common_sampler: penalties with repeat 1.0, top-k 40,
typical 1.0, top-p 1.0, min-p 0.05, temperature 0, dist). Both fill llama.cpp's candidate
array (the whole vocabulary, 12 bytes a token) before their samplers run. The figure is the
thread's CPU time (median of --calls), which other processes on a shared machine barely move,
unlike wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from bench import machine, servers


def chains(llama_cpp: Any, n_vocab: int) -> dict[str, Any]:
    def chain(*samplers: Any) -> Any:
        c = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        for s in samplers:
            llama_cpp.llama_sampler_chain_add(c, s)
        return c

    return {
        "ours (greedy)": chain(llama_cpp.llama_sampler_init_greedy()),
        "llama-server's chain, temperature 0": chain(
            llama_cpp.llama_sampler_init_penalties(n_vocab, 64, 1.0, 0.0, 0.0),
            llama_cpp.llama_sampler_init_top_k(40), llama_cpp.llama_sampler_init_typical(1.0, 1),
            llama_cpp.llama_sampler_init_top_p(1.0, 1),
            llama_cpp.llama_sampler_init_min_p(0.05, 1),
            llama_cpp.llama_sampler_init_temp_ext(0.0, 0.0, 1.0),
            llama_cpp.llama_sampler_init_dist(42)),
        "top-k 1, then greedy": chain(llama_cpp.llama_sampler_init_top_k(1),
                                      llama_cpp.llama_sampler_init_greedy()),
    }


def measure(path: Path, calls: int) -> dict[str, Any]:
    from runtime.llama import cpu
    from runtime.llama import model as llama_model
    from runtime.llama.bindings import llama_cpp

    cpu.load()
    llama_cpp.llama_backend_init()
    model = llama_model.load_model(str(path), 0)
    tokenizer = llama_model.Tokenizer(model)
    ctx = llama_model.new_context(model, 512, machine.physical_cores())
    prompt = tokenizer.tokenize("Tell me about rivers, please.")
    batch = llama_cpp.llama_batch_init(len(prompt), 0, 1)
    batch.n_tokens = len(prompt)
    for i, token in enumerate(prompt):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
        batch.seq_id[i][0], batch.logits[i] = 0, i == len(prompt) - 1
    if llama_cpp.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed")
    out: dict[str, Any] = {"model": path.name, "n_vocab": tokenizer.n_vocab, "cpu_us": {}}
    picks = set()
    for name, chain in chains(llama_cpp, tokenizer.n_vocab).items():
        picks.add(llama_cpp.llama_sampler_sample(chain, ctx, len(prompt) - 1))
        times = []
        for _ in range(calls):
            started = time.thread_time_ns()
            llama_cpp.llama_sampler_sample(chain, ctx, len(prompt) - 1)
            times.append(time.thread_time_ns() - started)
        out["cpu_us"][name] = statistics.median(times) / 1e3
    if len(picks) != 1:
        raise RuntimeError(f"the chains picked different tokens: {picks}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append",
                   help="default: the demo model")
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args()
    models = args.model or [servers.REPO / "models" / "gemma-3-270m-q4_k_m.gguf"]
    rows = [measure(m, args.calls) for m in models]
    names = list(rows[0]["cpu_us"])
    print("| model | vocabulary | " + " | ".join(f"{n}, CPU µs" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for r in rows:
        print(f"| {r['model']} | {r['n_vocab']:,} | "
              + " | ".join(f"{r['cpu_us'][n]:.0f}" for n in names) + " |")
    print(f"\nMedian of {args.calls} calls each; load average {machine.load_average()}.")


if __name__ == "__main__":
    main()
