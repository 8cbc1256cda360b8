"""Several clients at once, ours against llama-server, both launched with `-np N`.

    .venv/bin/python -m bench.concurrency [--artifact A] [--model M] [--clients 1,2,4,8]
                                          [--reps 3] [--tokens 64] [--turns 8]

For each N, each server is launched with N parallel sequences (llama-server also with its
unified KV cache, `-kvu`, the layout ours uses), N clients stream a greedy answer of --tokens
tokens each to different short prompts, all sent at once: the aggregate decode rate is every
client's tokens over the time from the first request sent to the last token received, and the
slowest client's time to first token is the worst wait; the peak resident memory of the
server's process tree (VmHWM summed, as bench.runner reports it) is read after the run, so
with the same context size it compares the N sequences' footprints. Then 4 conversations are
interleaved turn by turn (-np 4): each conversation's turn-8 TTFT over its turn-1 TTFT says
whether every sequence kept its own KV prefix. The order of the servers rotates each
repetition. Prints a table and writes bench/results/concurrency-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench import machine, peer, report, servers
from bench.client import stream_chat
from bench.multiturn import QUESTIONS
from bench.servers import ServerSpec, launched

TOPICS = ["rivers", "mountains", "the sea", "forests", "deserts", "cities", "islands", "stars"]


def specs(artifact: Path, model: Path, binary: Path, n: int, threads: int, ctx: int,
          work: Path, unified: bool = True) -> list[ServerSpec]:
    ours = servers.ours(artifact, threads, ctx)
    chat = servers.chat_format_of(artifact)
    peer_spec = servers.llama_server(binary, model, threads, ctx, chat, work,
                                     ("-np", str(n), *["-kvu"] * unified))
    return [ServerSpec(ours.name, lambda port: [*ours.argv(port), "--parallel", str(n)],
                       ours.ready_path), peer_spec]


def clients_at_once(url: str, n: int, tokens: int, rep: int) -> dict[str, float]:
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def one(i: int) -> None:
        messages = [{"role": "user", "content": f"({rep}.{i}) Tell me about {TOPICS[i % 8]}."}]
        with httpx.Client(trust_env=False) as client:
            start.wait()
            results[i] = stream_chat(client, url, messages, tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = min(r.sent for r in results)
    done = max(r.last for r in results)
    total = sum(r.completion_tokens(tokens)[0] for r in results)
    out = {"aggregate_tps": total / (done - sent),
           "slowest_ttft_s": max(r.ttft() for r in results), "tokens": total,
           # per token as each client saw it (first to last text chunk), and as llama-server
           # times its own slots (its `timings`; ours sends none in this dialect)
           "client_ms_per_token": statistics.median(
               (r.last - r.first) * 1e3 / max(1, r.completion_tokens(tokens)[0] - 1)
               for r in results)}
    served = [r.timings["predicted_per_token_ms"] for r in results
              if r.timings and "predicted_per_token_ms" in r.timings]
    if served:
        out["server_ms_per_token"] = statistics.median(served)
    return out


def interleaved(url: str, turns: int, rep: int, conversations: int = 4) -> list[float]:
    """Each conversation's turn-`turns` TTFT over its turn-1 TTFT."""
    talks: list[list[dict[str, str]]] = [[] for _ in range(conversations)]
    firsts: list[list[float]] = [[] for _ in range(conversations)]
    with httpx.Client(trust_env=False) as client:
        for turn in range(turns):
            for c, messages in enumerate(talks):
                question = QUESTIONS[turn % len(QUESTIONS)]
                if turn == 0:
                    question = f"(conversation {rep}.{c}, about {TOPICS[c]}) {question}"
                messages.append({"role": "user", "content": question})
                answer = stream_chat(client, url, messages, 32)
                messages.append({"role": "assistant", "content": answer.text})
                firsts[c].append(answer.ttft())
    return [row[-1] / row[0] for row in firsts]


def run(args: argparse.Namespace) -> dict[str, Any]:
    binary = args.llama_server or peer.ensure_llama_server()
    out: dict[str, Any] = {"clients": {}, "interleaved": {}}
    with tempfile.TemporaryDirectory(prefix="llamabundle-bench-") as tmp:
        work = Path(tmp)
        for n in args.clients:
            runs: dict[str, list[dict[str, float]]] = {}
            for rep in range(args.reps):
                pair = specs(args.artifact, args.model, binary, n, args.threads, args.ctx, work,
                             not args.peer_default_layout)
                for spec in pair[rep % 2:] + pair[:rep % 2]:
                    with launched(spec, work) as server, httpx.Client() as c:
                        server.wait_ready(c)
                        clients_at_once(server.url, n, 8, 999)  # warm: untimed
                        result = clients_at_once(server.url, n, args.tokens, rep)
                        result["peak_rss_mb"] = server.peak_rss_bytes() / 1e6
                        runs.setdefault(spec.name, []).append(result)
            out["clients"][n] = runs
            print(f"{n} clients: " + "; ".join(
                f"{name} {_median(r, 'aggregate_tps'):.1f} tok/s, slowest first token "
                f"{_median(r, 'slowest_ttft_s'):.2f} s" for name, r in runs.items()), flush=True)
        for spec in specs(args.artifact, args.model, binary, 4, args.threads, args.ctx, work):
            ratios = []
            for rep in range(args.reps):
                with launched(spec, work) as server, httpx.Client() as c:
                    server.wait_ready(c)
                    ratios += interleaved(server.url, args.turns, rep)
            out["interleaved"][spec.name] = ratios
            print(f"interleaved x4, {spec.name}: turn {args.turns} / turn 1 TTFT median "
                  f"{statistics.median(ratios):.2f} (max {max(ratios):.2f})", flush=True)
    return out


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _rss(runs: list[dict[str, float]]) -> str:
    """The median peak RSS, or a dash for results written before it was measured."""
    if not all("peak_rss_mb" in r for r in runs):
        return "–"
    return f"{_median(runs, 'peak_rss_mb'):.0f} MB"


def table(data: dict[str, Any]) -> str:
    ours, theirs = servers.OURS, servers.LLAMA_SERVER
    lines = ["| clients | ours tok/s | llama-server tok/s | ratio | ours slowest TTFT | "
             "llama-server slowest TTFT | ratio | ours peak RSS | llama-server peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, runs in data["clients"].items():
        pairs = list(zip(runs[ours], runs[theirs], strict=True))
        tps = [a["aggregate_tps"] / b["aggregate_tps"] for a, b in pairs]
        ttft = [a["slowest_ttft_s"] / b["slowest_ttft_s"] for a, b in pairs]
        lines.append(
            f"| {n} | {_median(runs[ours], 'aggregate_tps'):.1f} | "
            f"{_median(runs[theirs], 'aggregate_tps'):.1f} | {statistics.median(tps):.2f}× "
            f"({min(tps):.2f}–{max(tps):.2f}) | {_median(runs[ours], 'slowest_ttft_s'):.2f} s | "
            f"{_median(runs[theirs], 'slowest_ttft_s'):.2f} s | {statistics.median(ttft):.2f}× "
            f"({min(ttft):.2f}–{max(ttft):.2f}) | {_rss(runs[ours])} | {_rss(runs[theirs])} |")
    for name, ratios in data["interleaved"].items():
        lines.append(f"\nInterleaved, 4 conversations, {name}: turn-8 / turn-1 TTFT median "
                     f"{statistics.median(ratios):.2f}× (min {min(ratios):.2f}, max "
                     f"{max(ratios):.2f})")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path,
                   default=Path("gemma-3-270m-q4_k_m.llamabundle").absolute())
    p.add_argument("--model", type=Path, default=servers.REPO / "models" /
                   "gemma-3-270m-q4_k_m.gguf")
    p.add_argument("--llama-server", type=Path)
    p.add_argument("--clients", default="1,2,4,8")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--threads", type=int, default=machine.physical_cores())
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--results", type=Path, default=servers.REPO / "bench" / "results")
    p.add_argument("--tag", default="", help="added to the results' names (another model)")
    p.add_argument("--peer-default-layout", action="store_true",
                   help="llama-server without -kvu (its default: the context split per slot)")
    args = p.parse_args()
    args.clients = [int(n) for n in args.clients.split(",")]
    args.artifact, args.model = args.artifact.resolve(), args.model.resolve()
    started = time.time()
    data = {"command": "python -m bench.concurrency", "config": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine.info(args.llama_server or peer.ensure_llama_server(), servers.REPO),
        "load_average_start": machine.load_average(), **run(args),
        "load_average_end": machine.load_average(), "duration_s": time.time() - started}
    text = table(data)
    print("\n" + text)
    stem = datetime.date.fromtimestamp(started).isoformat() + (f"-{args.tag}" * bool(args.tag))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"concurrency-{stem}.json").write_text(json.dumps(data, indent=1))
    (args.results / f"concurrency-{stem}.md").write_text(text + "\n")
    chart(data, args.results / f"concurrency-{stem}.png")


def chart(data: dict[str, Any], path: Path) -> None:
    """Ours / llama-server per number of clients: aggregate decode (goal at 4: >= 1.0) and
    the slowest client's first token (goal at 4: <= 1.2), median with min–max whiskers."""
    ours, theirs = servers.OURS, servers.LLAMA_SERVER
    labels: list[str] = []
    points: list[tuple[float, float, float]] = []
    goals: list[float | None] = []
    for key, label, goal in (("aggregate_tps", "aggregate tok/s ↑", 1.0),
                             ("slowest_ttft_s", "slowest first token ↓", 1.2)):
        for n, runs in data["clients"].items():
            ratios = [a[key] / b[key] for a, b in zip(runs[ours], runs[theirs], strict=True)]
            labels.append(f"{label}, {n} client{'s' if int(n) > 1 else ''}")
            points.append((statistics.median(ratios), min(ratios), max(ratios)))
            goals.append(goal if int(n) == 4 else None)
    report.bars(labels, {theirs: points}, goals, path,
                f"{data['command']}: ours / llama-server -np N -kvu "
                f"({data['machine'].get('cpu', '')})")


if __name__ == "__main__":
    main()
