"""Where a decode step's time goes with N clients streaming at once (issue #14).

    .venv/bin/python -m bench.step_profile [--artifact A] [--clients 8] [--tokens 64] [--reps 3]

Starts the runtime from this checkout's sources (not the frozen artifact: the timers are put
in by wrapping the decoder's functions, which a frozen binary does not allow) with `--parallel
N`, streams N greedy answers at once --reps times, stops it, and prints what one step cost on
average over the steps that decoded exactly N sequences and no prompt: llama_decode, sampling
(llama_sampler_sample), the piece lookup (llama_token_to_piece), UTF-8 decoding and stop
scanning, handing each piece to its request (the queue put), and the rest of the step in Python
(the batch filled, bookkeeping). "Python, waiting" is wall time outside llama_decode that the
decode thread did not spend on a CPU: waiting for the GIL or for a core. The timers cost a
little themselves (about a microsecond per wrapped call, counted in the categories they wrap).
Writes bench/results/step-profile-<date>.md and .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import machine, servers
from bench.concurrency import clients_at_once
from bench.servers import ServerSpec, launched

CATEGORIES = ("llama_decode", "sampling", "piece", "utf8_stops", "queueing")


def instrument(out: Path) -> None:
    """Wraps the decode thread's parts in timers (in the server's process); the steps are
    appended to `out` (JSON lines) whenever no sequence is left running."""
    from runtime.llama import decoder
    from runtime.llama.bindings import llama_cpp

    steps: list[dict[str, int]] = []
    current: dict[str, int] = {}
    clock, cpu = time.perf_counter_ns, time.thread_time_ns

    def timed(category: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                current[category] = current.get(category, 0) + clock() - t
                current[category + "_n"] = current.get(category + "_n", 0) + 1
        return wrapper

    llama_decode = llama_cpp.llama_decode

    def decode(ctx: Any, batch: Any) -> int:
        current["batch"] = batch.n_tokens
        t, c = clock(), cpu()
        try:
            return int(llama_decode(ctx, batch))
        finally:
            current["llama_decode"] = clock() - t
            current["llama_decode_cpu"] = cpu() - c

    llama_cpp.llama_decode = decode
    llama_cpp.llama_sampler_sample = timed("sampling", llama_cpp.llama_sampler_sample)
    decoder.Decoder._piece = timed("piece", decoder.Decoder._piece)  # type: ignore[method-assign]
    scanner_feed = decoder.StopScanner.feed
    decoder.StopScanner.feed = timed("utf8_stops", scanner_feed)  # type: ignore[method-assign]

    class Utf8:  # the incremental decoder, timed with the stop scanning
        def __init__(self) -> None:
            import codecs
            self.inner = codecs.getincrementaldecoder("utf-8")(errors="replace")
            self.decode = timed("utf8_stops", self.inner.decode)

    class Out:  # the queue each piece is put on, its put timed
        def __init__(self, inner: Any) -> None:
            self.inner, self.get = inner, inner.get
            self.put = timed("queueing", inner.put)

    sequence_init = decoder._Sequence.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        sequence_init(self, *args, **kwargs)
        self.out, self.utf8 = Out(self.out), Utf8()

    decoder._Sequence.__init__ = init  # type: ignore[method-assign]
    decode_step = decoder.Decoder._decode_step

    def step(self: Any) -> None:
        current.clear()
        active = len(self._active)
        prefill = sum(1 for s in self._active if s.pending)
        t, c = clock(), cpu()
        decode_step(self)
        steps.append({**current, "wall": clock() - t, "cpu": cpu() - c, "active": active,
                      "prefill": prefill})

    decoder.Decoder._decode_step = step  # type: ignore[method-assign]
    end = decoder.Decoder._end

    def flush(self: Any, *args: Any, **kwargs: Any) -> None:
        end(self, *args, **kwargs)
        if not self._active and steps:  # all answered: written out while nothing runs
            with out.open("a") as f:
                f.writelines(json.dumps(s) + "\n" for s in steps)
                f.write(json.dumps({"threads": thread_cpu()}) + "\n")
            steps.clear()

    decoder.Decoder._end = flush  # type: ignore[method-assign]


def thread_cpu() -> dict[str, int]:
    """CPU time (ns, from the kernel's schedstat) of the process's threads by role: the
    decode thread, the request threads, the event loop, and the rest (llama.cpp's workers)."""
    import threading

    def on_cpu(path: str) -> int:
        with open(path) as f:
            return int(f.read().split()[0])

    def switches(tid: str) -> int:  # the times the thread slept and was woken
        with open(f"/proc/self/task/{tid}/status") as f:
            return sum(int(line.split()[1]) for line in f
                       if line.startswith("voluntary_ctxt_switches"))

    roles = {t.native_id: ("decode" if t.name == "decode" else "event_loop" if
                           t is threading.main_thread() else "requests" if
                           t.name.startswith("model") else "other_python")
             for t in threading.enumerate()}
    cpu = {"decode": 0, "event_loop": 0, "requests": 0, "other_python": 0, "llama_workers": 0}
    for tid in os.listdir("/proc/self/task"):
        role = roles.get(int(tid))
        if role is not None:
            cpu[role] += on_cpu(f"/proc/self/task/{tid}/schedstat")
            cpu[f"{role}_wakeups"] = cpu.get(f"{role}_wakeups", 0) + switches(tid)
    with open("/proc/self/stat") as f:  # every thread's, those that ended too (in ticks)
        utime, stime = f.read().rsplit(")", 1)[1].split()[11:13]
    process = (int(utime) + int(stime)) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    cpu["llama_workers"] = max(0, process - sum(v for k, v in cpu.items()
                                                if not k.endswith("_wakeups")))
    return cpu


def summary(records: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The mean step (µs) over the steps that decoded n sequences and no prompt, and each
    thread's CPU per generated token from the first snapshot (after the warm-up) to the last."""
    snapshots = [i for i, r in enumerate(records) if "threads" in r]
    timed = records[snapshots[0] + 1:snapshots[-1]]
    steps = [r for r in timed if "threads" not in r]
    pure = [s for s in steps if s["active"] == n and s["prefill"] == 0 and s["batch"] == n]
    if not pure:
        raise RuntimeError(f"no step decoded {n} sequences without a prompt")
    mean = {k: sum(s.get(k, 0) for s in pure) / len(pure) / 1e3
            for k in (*CATEGORIES, "wall", "cpu", "llama_decode_cpu")}
    python_wall = mean["wall"] - mean["llama_decode"]
    mean["other"] = python_wall - sum(mean[k] for k in CATEGORIES[1:])
    mean["python_off_cpu"] = max(0.0, python_wall - (mean["cpu"] - mean["llama_decode_cpu"]))
    tokens = sum(s.get("sampling_n", 0) for s in steps)
    first, last = records[snapshots[0]]["threads"], records[snapshots[-1]]["threads"]
    per_token = {role: (last[role] - first.get(role, 0)) / tokens / (
        1 if role.endswith("_wakeups") else 1e3) for role in last}
    per_token["decode_outside_llama"] = per_token["decode"] - sum(
        s.get("llama_decode_cpu", 0) for s in steps) / tokens / 1e3
    return {"steps": len(pure), "mean_us": mean, "tokens": tokens,
            "cpu_us_per_token": per_token}


def table(result: dict[str, Any], n: int) -> str:
    mean = result["mean_us"]
    rows = [("llama_decode", "llama_decode"), ("sampling (llama_sampler_sample)", "sampling"),
            ("piece (llama_token_to_piece)", "piece"), ("UTF-8 decoding, stop scanning",
                                                        "utf8_stops"),
            ("queueing (a put per piece)", "queueing"), ("other Python (batch, bookkeeping)",
                                                         "other")]
    lines = [f"Mean decode step with {n} sequences ({result['steps']} steps, no prompt in "
             f"them): {mean['wall']:.0f} µs, {mean['wall'] / n:.0f} µs per token", "",
             "| part of the step | µs per step | share | µs per token |", "|---|---|---|---|"]
    for label, key in rows:
        lines.append(f"| {label} | {mean[key]:.0f} | {mean[key] / mean['wall']:.1%} | "
                     f"{mean[key] / n:.1f} |")
    lines.append(f"\nOf the step's Python (all but llama_decode), {mean['python_off_cpu']:.0f} "
                 "µs were spent off a CPU: waiting for the GIL or a core.")
    cpu = result["cpu_us_per_token"]
    lines += ["", f"CPU per generated token, by thread ({result['tokens']} tokens):", "",
              "| thread | CPU µs per token | wake-ups per token |", "|---|---|---|"]
    for label, key in [("decode thread, outside llama_decode", "decode_outside_llama"),
                       ("decode thread, in llama_decode", "decode"),
                       ("request threads (one per stream)", "requests"),
                       ("event loop (HTTP, SSE)", "event_loop"),
                       ("llama.cpp's worker threads", "llama_workers")]:
        value = cpu[key] - (cpu["decode_outside_llama"] if key == "decode" else 0)
        wakeups = cpu.get(f"{key.split('_outside')[0]}_wakeups")
        lines.append(f"| {label} | {value:.0f} | "
                     f"{'' if wakeups is None or key == 'decode' else f'{wakeups:.2f}'} |")
    return "\n".join(lines)


def serve(out: Path, argv: list[str]) -> int:
    instrument(out)
    from runtime.main import main
    sys.argv = ["llamabundle-runtime", *argv]
    return main(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llamabundle-profile-") as tmp:
        work = Path(tmp)
        out = work / "steps.json"

        def argv(port: int) -> list[str]:
            return [sys.executable, "-m", "bench.step_profile", "--serve", str(out),
                    str(args.artifact), "--nobrowser", "--host", "127.0.0.1", "--port",
                    str(port), "-t", str(args.threads), "-c", str(args.ctx), "--parallel",
                    str(args.clients)]

        runs = []
        with launched(ServerSpec("llamabundle-profiled", argv, "/health"), work) as server, \
                httpx.Client() as client:
            server.wait_ready(client)
            clients_at_once(server.url, args.clients, 8, 999)  # warm: its steps count too
            for rep in range(args.reps):
                runs.append(clients_at_once(server.url, args.clients, args.tokens, rep))
        records = [json.loads(line) for line in out.read_text().splitlines()]
    return {"summary": summary(records, args.clients), "runs": runs}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        sys.exit(serve(Path(sys.argv[2]), sys.argv[3:]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path,
                   default=Path("gemma-3-270m-q4_k_m.llamabundle").absolute())
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=machine.physical_cores())
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--results", type=Path, default=servers.REPO / "bench" / "results")
    args = p.parse_args()
    args.artifact = args.artifact.resolve()
    load = machine.load_average()
    data = {"command": "python -m bench.step_profile", "config": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_start": load, **run(args), "load_average_end": machine.load_average()}
    text = table(data["summary"], args.clients) + (
        f"\n\nLoad average {load} at the start, {data['load_average_end']} at the end; "
        f"aggregate {sum(r['aggregate_tps'] for r in data['runs']) / len(data['runs']):.1f} "
        "tok/s (timers in).")
    print(text)
    stem = f"step-profile-{datetime.date.today().isoformat()}"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.json").write_text(json.dumps(data, indent=1))
    (args.results / f"{stem}.md").write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
