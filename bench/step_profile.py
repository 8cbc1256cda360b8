"""Where a decode step's time goes with N clients streaming at once (issues #14, #25).

    .venv/bin/python -m bench.step_profile [--artifact A] [--clients 8] [--tokens 64] [--reps 3]
        [--peer --model GGUF [--peer-default-layout]] [--tag T]

Starts the runtime from this checkout's sources (not the frozen artifact: the timers are put
in by wrapping the decoder's functions, which a frozen binary does not allow) with `--parallel
N`, streams N greedy answers at once --reps times, stops it, and prints what one step cost on
average over the steps that decoded exactly N sequences and no prompt: llama_decode, sampling
(llama_sampler_sample), the piece lookup (llama_token_to_piece), UTF-8 decoding and stop
scanning, handing each piece to its request (the queue put), the rest of the step in Python
(the batch filled, bookkeeping), and the decode thread's time between two steps. "Python,
waiting" is wall time outside llama_decode that the decode thread did not spend on a CPU:
waiting for the GIL or for a core. Then each thread's CPU per token and how often it slept and
was woken (llama.cpp's pool workers too: the threadpool's wake-ups), and the hop of each piece
to the event loop: its latency from the decode thread to the request thread, and from there to
the event loop. The timers cost a little themselves (about a microsecond per wrapped call,
counted in the categories they wrap).

--peer also starts llama-server (`-np N`, with `-kvu` unless --peer-default-layout) on the
same GGUF; both stay up (idle, asleep) and are used in turn, the order alternating each rep:
ms per token as the clients saw it, the server's own per-token time (llama-server's
`predicted_per_token_ms`), the whole process's CPU per token, the aggregate rate.
Writes bench/results/step-profile-<date>[-tag].md and .json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import machine, peer, servers
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
    hops: dict[str, list[int]] = {"to_request_thread": [], "to_event_loop": []}
    last_end = [0]
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    hop_to_loop(hops["to_event_loop"], clock)

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

    class Out:  # the queue each piece is put on: its put timed, and the hop to the request
        # thread (from the put to the get that returns it, on that thread)
        def __init__(self, inner: Any) -> None:
            import collections
            self.inner = inner
            self.put_at: collections.deque[int] = collections.deque()
            self._put = timed("queueing", inner.put)

        def put(self, item: Any) -> None:
            self.put_at.append(clock())
            self._put(item)

        def get(self, *args: Any, **kwargs: Any) -> Any:
            item = self.inner.get(*args, **kwargs)
            if self.put_at:
                hops["to_request_thread"].append(clock() - self.put_at.popleft())
            return item

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
        end = clock()
        # the gap: the decode thread between two steps (the inbox, cancellations, admission)
        steps.append({**current, "wall": end - t, "cpu": cpu() - c, "active": active,
                      "prefill": prefill, "gap": t - last_end[0] if last_end[0] else -1})
        last_end[0] = end

    decoder.Decoder._decode_step = step  # type: ignore[method-assign]
    end = decoder.Decoder._end

    def flush(self: Any, *args: Any, **kwargs: Any) -> None:
        end(self, *args, **kwargs)
        if not self._active and steps:  # all answered: written out while nothing runs
            last_end[0] = 0  # the next first step follows an idle wait, not a step
            with out.open("a") as f:
                f.writelines(json.dumps(s) + "\n" for s in steps)
                f.write(json.dumps({"threads": thread_cpu(), "hops": {
                    k: list(v) for k, v in hops.items()}}) + "\n")
            steps.clear()
            for v in hops.values():
                v.clear()

    decoder.Decoder._end = flush  # type: ignore[method-assign]


def hop_to_loop(latencies: list[int], clock: Callable[[], int]) -> None:
    """Times each callback handed to the event loop from another thread (a request thread's
    chunk, Worker.stream) from the call_soon_threadsafe to the moment the loop runs it."""
    import asyncio

    handoff = asyncio.BaseEventLoop.call_soon_threadsafe

    def call_soon_threadsafe(self: Any, callback: Callable[..., Any], *args: Any,
                             context: Any = None) -> Any:
        t = clock()

        def run(*a: Any) -> Any:
            latencies.append(clock() - t)
            return callback(*a)
        return handoff(self, run, *args, context=context)

    asyncio.BaseEventLoop.call_soon_threadsafe = call_soon_threadsafe  # type: ignore


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
        else:  # llama.cpp's pool workers: they live as long as the process, so this counts
            # their sleeps between and inside graphs (the pool does not poll)
            cpu["llama_workers_wakeups"] = cpu.get("llama_workers_wakeups", 0) + switches(tid)
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
    # the decode thread between a step and the next (both pure): the loop's own checks
    is_pure = [s in pure for s in steps]
    gaps = [s["gap"] for i, s in enumerate(steps)
            if i and is_pure[i] and is_pure[i - 1] and s.get("gap", -1) >= 0]
    mean["gap"] = statistics.mean(gaps) / 1e3 if gaps else 0.0
    tokens = sum(s.get("sampling_n", 0) for s in steps)
    first, last = records[snapshots[0]]["threads"], records[snapshots[-1]]["threads"]
    per_token = {role: (last[role] - first.get(role, 0)) / tokens / (
        1 if role.endswith("_wakeups") else 1e3) for role in last}
    per_token["decode_outside_llama"] = per_token["decode"] - sum(
        s.get("llama_decode_cpu", 0) for s in steps) / tokens / 1e3
    hops = {k: [v for i in snapshots[1:] for v in records[i].get("hops", {}).get(k, [])]
            for k in ("to_request_thread", "to_event_loop")}
    return {"steps": len(pure), "mean_us": mean, "tokens": tokens,
            "cpu_us_per_token": per_token,
            "hop_us": {k: {"median": statistics.median(v) / 1e3,
                           "p90": statistics.quantiles(v, n=10)[-1] / 1e3, "n": len(v)}
                       for k, v in hops.items() if len(v) > 1}}


def table(result: dict[str, Any], n: int) -> str:
    mean = result["mean_us"]
    interval = mean["wall"] + mean["gap"]
    rows = [("llama_decode", "llama_decode"), ("sampling (llama_sampler_sample)", "sampling"),
            ("piece (llama_token_to_piece)", "piece"), ("UTF-8 decoding, stop scanning",
                                                        "utf8_stops"),
            ("queueing (a put per piece)", "queueing"), ("other Python (batch, bookkeeping)",
                                                         "other"),
            ("between steps (inbox, cancellations)", "gap")]
    lines = [f"Mean decode step with {n} sequences ({result['steps']} steps, no prompt in "
             f"them): {mean['wall']:.0f} µs, {interval:.0f} µs from one step's start to the "
             f"next's, {interval / n:.0f} µs per token", "",
             "| part of the step | µs per step | share | µs per token |", "|---|---|---|---|"]
    for label, key in rows:
        lines.append(f"| {label} | {mean[key]:.0f} | {mean[key] / interval:.1%} | "
                     f"{mean[key] / n:.1f} |")
    lines.append(f"\nIn llama_decode the decode thread (the pool's first worker) was on a CPU "
                 f"{mean['llama_decode_cpu']:.0f} µs of {mean['llama_decode']:.0f}: the rest "
                 "it waited at the graph's barriers for the other worker(s), or for a core. "
                 f"Of the step's Python (all but llama_decode), {mean['python_off_cpu']:.0f} "
                 "µs were spent off a CPU: waiting for the GIL or a core.")
    cpu = result["cpu_us_per_token"]
    lines += ["", f"CPU per generated token, by thread ({result['tokens']} tokens):", "",
              "| thread | CPU µs per token | wake-ups per token |", "|---|---|---|"]
    for label, key in [("decode thread, outside llama_decode", "decode_outside_llama"),
                       ("decode thread, in llama_decode", "decode"),
                       ("request threads (one per stream)", "requests"),
                       ("event loop (HTTP, SSE)", "event_loop"),
                       ("llama.cpp's pool workers (all but the decode thread)",
                        "llama_workers")]:
        value = cpu[key] - (cpu["decode_outside_llama"] if key == "decode" else 0)
        wakeups = cpu.get(f"{key.split('_outside')[0]}_wakeups")
        lines.append(f"| {label} | {value:.0f} | "
                     f"{'' if wakeups is None or key == 'decode' else f'{wakeups:.2f}'} |")
    hops = result.get("hop_us", {})
    if hops:
        lines += ["", "The hop of each piece to the event loop (latency; it overlaps the next "
                  "llama_decode, so it costs a token only through the CPU it takes):", "",
                  "| hop | median µs | p90 µs | pieces |", "|---|---|---|---|"]
        for label, key in [("decode thread -> request thread (queue put to get)",
                            "to_request_thread"),
                           ("request thread -> event loop (call_soon_threadsafe to run)",
                            "to_event_loop")]:
            if key in hops:
                h = hops[key]
                lines.append(f"| {label} | {h['median']:.0f} | {h['p90']:.0f} | {h['n']} |")
    return "\n".join(lines)


def peer_table(ours: list[dict[str, float]], peer: list[dict[str, float]], n: int,
               layout: str, step_ms_per_token: float) -> str:
    """Ours (timers in) against llama-server, rep by rep (alternating)."""
    def med(runs: list[dict[str, float]], key: str) -> float:
        values = [r[key] for r in runs if key in r]
        return statistics.median(values) if values else float("nan")

    pairs = list(zip(ours, peer, strict=True))
    ratios = [a["client_ms_per_token"] / b["client_ms_per_token"] for a, b in pairs]
    agg = [a["aggregate_tps"] / b["aggregate_tps"] for a, b in pairs]
    served = med(peer, "server_ms_per_token")
    cpu = [a["process_cpu_us_per_token"] / b["process_cpu_us_per_token"] for a, b in pairs]
    return "\n".join([
        f"Against llama-server `-np {n}` ({layout}), same model, same clients, alternating "
        f"({len(pairs)} pairs):", "",
        "| | ours (timers in) | llama-server | ours / llama-server |", "|---|---|---|---|",
        f"| ms per token, as each client saw it (median client) | "
        f"{med(ours, 'client_ms_per_token'):.2f} | {med(peer, 'client_ms_per_token'):.2f} | "
        f"{statistics.median(ratios):.3f}× ({min(ratios):.3f}–{max(ratios):.3f}) |",
        f"| ms per token of one stream, the server's own count (ours: the step interval; "
        f"llama-server: its slot's `predicted_per_token_ms`) | {step_ms_per_token:.2f} | "
        f"{served:.2f} | "
        f"{step_ms_per_token / served:.3f}× |",
        f"| CPU per token, the whole server process (all threads), µs | "
        f"{med(ours, 'process_cpu_us_per_token'):.0f} | "
        f"{med(peer, 'process_cpu_us_per_token'):.0f} | "
        f"{statistics.median(cpu):.3f}× ({min(cpu):.3f}–{max(cpu):.3f}) |",
        f"| aggregate tok/s | {med(ours, 'aggregate_tps'):.1f} | "
        f"{med(peer, 'aggregate_tps'):.1f} | {statistics.median(agg):.3f}× "
        f"({min(agg):.3f}–{max(agg):.3f}) |"])


def process_cpu_s(pid: int) -> float:
    """The CPU time of a process's threads, in seconds (user + system, from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        utime, stime = f.read().rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def nice_python(n: int) -> None:
    """An experiment (issue #25), not the product: when uvicorn starts serving, its thread (the
    event loop) takes nice n, and so does each request thread as it starts reading a stream;
    the decode thread and llama.cpp's pool keep nice 0. On cores that llama.cpp's threads
    fill, the hops then wait for a gap between steps instead of preempting a worker (which its
    partner then waits for at the graph's next barrier)."""
    import threading

    import uvicorn

    from runtime.llama import decoder

    def lower() -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), n)

    serve, events = uvicorn.Server.serve, decoder.Decoder._events

    async def niced(self: Any, *args: Any, **kwargs: Any) -> None:
        lower()
        await serve(self, *args, **kwargs)

    def niced_events(sequence: Any) -> Any:
        lower()
        yield from events(sequence)

    uvicorn.Server.serve = niced  # type: ignore[method-assign]
    decoder.Decoder._events = staticmethod(niced_events)  # type: ignore[method-assign]


def serve(out: Path, argv: list[str]) -> int:
    if os.environ.get("STEP_PROFILE_NICE"):
        nice_python(int(os.environ["STEP_PROFILE_NICE"]))
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

        if args.nice_python:
            os.environ["STEP_PROFILE_NICE"] = str(args.nice_python)
        specs = [ServerSpec("llamabundle-profiled", argv, "/health")]
        if args.peer:  # both up at once (idle, each sleeps), used in turn, order alternating
            specs.append(servers.llama_server(
                args.llama_server or peer.ensure_llama_server(), args.model, args.threads,
                args.ctx, servers.chat_format_of(args.artifact), work,
                ("-np", str(args.clients), *["-kvu"] * (not args.peer_default_layout))))
        runs: dict[str, list[dict[str, float]]] = {spec.name: [] for spec in specs}
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(httpx.Client())
            up = list(zip(specs, [stack.enter_context(launched(spec, work)) for spec in specs],
                          strict=True))
            for _, server in up:
                server.wait_ready(client)
                clients_at_once(server.url, args.clients, 8, 999)  # warm: its steps count too
            for rep in range(args.reps):
                for spec, server in up if rep % 2 == 0 else up[::-1]:
                    before = process_cpu_s(server.process.pid)
                    result = clients_at_once(server.url, args.clients, args.tokens, rep)
                    # all the server's threads: on 2 busy cores, every µs of it is a token's
                    result["process_cpu_us_per_token"] = (
                        process_cpu_s(server.process.pid) - before) * 1e6 / result["tokens"]
                    runs[spec.name].append(result)
        records = [json.loads(line) for line in out.read_text().splitlines()]
    return {"summary": summary(records, args.clients), "runs": runs["llamabundle-profiled"],
            "peer_runs": runs.get(servers.LLAMA_SERVER, [])}


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
    p.add_argument("--peer", action="store_true",
                   help="also stream the same clients from llama-server (needs --model), in "
                        "turn with ours, and compare their per-token times")
    p.add_argument("--model", type=Path, help="the artifact's GGUF, for the peer")
    p.add_argument("--llama-server", type=Path, help="default: bench.peer builds or finds it")
    p.add_argument("--peer-default-layout", action="store_true",
                   help="llama-server without -kvu (its default: the context split per slot)")
    p.add_argument("--tag", default="", help="a suffix for the results' file names")
    p.add_argument("--nice-python", type=int, default=0, metavar="N",
                   help="an experiment: the event loop and request threads at nice N (Linux)")
    args = p.parse_args()
    args.artifact = args.artifact.resolve()
    if args.peer and args.model is None:
        p.error("--peer needs --model (the GGUF the artifact was built from)")
    load = machine.load_average()
    data = {"command": "python -m bench.step_profile", "config": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_start": load, **run(args), "load_average_end": machine.load_average()}
    text = table(data["summary"], args.clients)
    if data["peer_runs"]:
        mean = data["summary"]["mean_us"]
        text += "\n\n" + peer_table(
            data["runs"], data["peer_runs"], args.clients,
            "its default layout, the context split per slot" if args.peer_default_layout
            else "-kvu, the unified layout ours uses",
            (mean["wall"] + mean["gap"]) / 1e3)
    text += (
        f"\n\nLoad average {load} at the start, {data['load_average_end']} at the end; "
        f"aggregate {sum(r['aggregate_tps'] for r in data['runs']) / len(data['runs']):.1f} "
        "tok/s (timers in).")
    print(text)
    stem = f"step-profile-{datetime.date.today().isoformat()}" + (
        f"-{args.tag}" if args.tag else "")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.json").write_text(json.dumps(data, indent=1))
    (args.results / f"{stem}.md").write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
