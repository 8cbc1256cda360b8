"""What picking one token costs on the CPU, ours against llama-server's chain (issue #25).

    .venv/bin/python -m bench.sampling [--model GGUF ...] [--calls 300]

In-process, on one position's logits: `llama_sampler_sample` with the chain the decoder makes
for a greedy request (runtime/llama/decoder.py: greedy alone), and with the chain llama-server
makes for the benchmark's requests (common_sampler: penalties with repeat 1.0, top-k 40,
typical 1.0, top-p 1.0, min-p 0.05, temperature 0, dist). Both fill llama.cpp's candidate
array (the whole vocabulary, 12 bytes a token) before their samplers run. The figure is the
thread's CPU time (median of --calls), which other processes on a shared machine barely move,
unlike wall time.

Then a greedy pick made inside llama_decode (llama.cpp's experimental backend sampling,
`llama_set_sampler`: an argmax node at the end of the graph) against the CPU pick the runtime
makes, in --sequences-sequence decode steps: two contexts in this process, one step of each in
turn, the same tokens fed to both (checked equal), timed per step (decode and the picks) in
wall time and in the whole process's CPU time. Measured and not kept (issue #25): ggml's CPU
argmax is a scalar loop on one thread, which over 262,144 logits costs about what the CPU
sampler's candidate fill does, and it takes the last of equal maxima where greedy takes the
first.
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


def in_graph(path: Path, n_seq: int, steps: int) -> dict[str, Any]:
    import ctypes

    from runtime.llama import cpu
    from runtime.llama import model as llama_model
    from runtime.llama.bindings import llama_cpp

    # Not in llama-cpp-python's bindings: declared here from llama.h (backend sampling).
    set_sampler = llama_cpp._lib.llama_set_sampler
    set_sampler.argtypes = [llama_cpp.llama_context_p_ctypes, ctypes.c_int32, ctypes.c_void_p]
    set_sampler.restype = ctypes.c_bool
    sampled_token = llama_cpp._lib.llama_get_sampled_token_ith
    sampled_token.argtypes = [llama_cpp.llama_context_p_ctypes, ctypes.c_int32]
    sampled_token.restype = ctypes.c_int32
    cpu.load()
    llama_cpp.llama_backend_init()
    model = llama_model.load_model(str(path), 0)
    tokenizer = llama_model.Tokenizer(model)
    contexts = {mode: llama_model.new_context(model, 4096, machine.physical_cores(), n_seq)
                for mode in ("on the CPU", "in llama_decode")}
    greedy = []
    for seq in range(n_seq):
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        greedy.append(chain)
        picker = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(picker, llama_cpp.llama_sampler_init_greedy())
        if not set_sampler(contexts["in llama_decode"], seq, picker):
            raise RuntimeError("llama.cpp refused the greedy chain")
    batch = llama_cpp.llama_batch_init(512, 0, n_seq)

    def step(mode: str, rows: list[tuple[int, int, int]]) -> tuple[list[int], float, float]:
        ctx = contexts[mode]
        batch.n_tokens = len(rows)
        for i, (token, pos, seq) in enumerate(rows):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = i == len(rows) - 1 or rows[i + 1][2] != seq
        wall, used = time.perf_counter_ns(), time.process_time_ns()
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        last = [i for i in range(len(rows)) if batch.logits[i]]
        if mode == "on the CPU":
            picks = [llama_cpp.llama_sampler_sample(greedy[rows[i][2]], ctx, i) for i in last]
        else:
            picks = [sampled_token(ctx, i) for i in last]
        return picks, (time.perf_counter_ns() - wall) / 1e6, (time.process_time_ns() - used) / 1e6

    prompts = [tokenizer.tokenize(f"({seq}) Tell me about topic number {seq}, please.")
               for seq in range(n_seq)]
    rows = [(t, i, seq) for seq, prompt in enumerate(prompts) for i, t in enumerate(prompt)]
    picks = {mode: step(mode, rows)[0] for mode in contexts}
    positions = [len(prompt) for prompt in prompts]
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in contexts}
    for k in range(steps):
        order = list(contexts) if k % 2 == 0 else list(contexts)[::-1]
        rows = [(picks["on the CPU"][seq], positions[seq] + k, seq) for seq in range(n_seq)]
        for mode in order:
            got, wall, used = step(mode, rows)
            picks[mode] = got
            times[mode].append((wall, used))
        if picks["on the CPU"] != picks["in llama_decode"]:
            raise RuntimeError(f"step {k}: the picks differ: {picks}")
    return {"model": path.name, "sequences": n_seq, "steps": steps,
            **{mode: {"wall_ms": statistics.median(w for w, _ in t),
                      "cpu_ms": statistics.median(c for _, c in t)}
               for mode, t in times.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append",
                   help="default: the demo model")
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    models = args.model or [servers.REPO / "models" / "gemma-3-270m-q4_k_m.gguf"]
    rows = [measure(m, args.calls) for m in models]
    names = list(rows[0]["cpu_us"])
    print("| model | vocabulary | " + " | ".join(f"{n}, CPU µs" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for r in rows:
        print(f"| {r['model']} | {r['n_vocab']:,} | "
              + " | ".join(f"{r['cpu_us'][n]:.0f}" for n in names) + " |")
    print(f"\nMedian of {args.calls} calls each; load average {machine.load_average()}.\n")
    print(f"| model | {args.sequences}-sequence step, greedy picks on the CPU: wall / process "
          "CPU, ms | picks in llama_decode | in llama_decode / on the CPU (wall) |")
    print("|---|---|---|---|")
    for m in models:
        r = in_graph(m, args.sequences, args.steps)
        cpu_side, graph = r["on the CPU"], r["in llama_decode"]
        print(f"| {r['model']} | {cpu_side['wall_ms']:.2f} / {cpu_side['cpu_ms']:.2f} | "
              f"{graph['wall_ms']:.2f} / {graph['cpu_ms']:.2f} | "
              f"{graph['wall_ms'] / cpu_side['wall_ms']:.3f}× |")
    print(f"\nMedian of {args.steps} steps each, in turn, the same picks; load average "
          f"{machine.load_average()}.")


if __name__ == "__main__":
    main()
