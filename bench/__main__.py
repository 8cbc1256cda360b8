"""`python -m bench` (`make bench`): our artifact against llama-server and llama_cpp.server.

Builds the peer llama-server once (cached), times `llamabundle build` against `cp`, then
launches the servers in turn, rotating the order every repetition, and writes
bench/results/<date>.json, .md (the README table) and .png (the ratios).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import buildtime, machine, peer, report, servers
from bench.prompts import Prompts
from bench.runner import Plan, measure_clean, warm_up

log = logging.getLogger("bench")
DEFAULT_MODEL = servers.REPO / "models" / "gemma-3-270m-q4_k_m.gguf"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF to serve")
    p.add_argument("--reps", type=int, help="launches per server (default 5; --quick: 2)")
    p.add_argument("--threads", type=int, help="-t for every server (default: physical cores)")
    p.add_argument("--ctx", type=int, default=4096, help="context size for every server")
    p.add_argument("--decode-tokens", type=int, help="tokens to generate (default 128; quick 32)")
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer reps and tokens")
    p.add_argument("--skip-llama-cpp-python", action="store_true",
                   help="leave out the second peer (python -m llama_cpp.server)")
    p.add_argument("--artifact", type=Path,
                   help="serve this prebuilt artifact instead of the one built from --model")
    p.add_argument("--no-repack", action="store_true",
                   help="turn off llama.cpp's weight repacking (extra buffer types such as AMX) "
                        "in both peers, for a runtime that does the same")
    p.add_argument("--llama-server", type=Path,
                   help="use this llama-server binary instead of building one")
    p.add_argument("--peer-args", default="", help="extra llama-server flags (one string)")
    p.add_argument("--max-foreign-cpu", type=float, default=0.10,
                   help="repeat a launch when other processes used more than this share of "
                        "all CPUs during it (default 0.10)")
    p.add_argument("--retries", type=int, help="repeats allowed per launch (default 2; quick 1)")
    p.add_argument("--results", type=Path, default=servers.REPO / "bench" / "results")
    p.add_argument("--from-json", type=Path,
                   help="measure nothing: redo the table and chart of an earlier results JSON")
    p.add_argument("--note", default="", help="a remark stored with the results")
    p.add_argument("--tag", default="", help="added to the results' names (another model)")
    args = p.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 5)
    args.decode_tokens = args.decode_tokens or (32 if args.quick else 128)
    args.threads = args.threads or machine.physical_cores()
    args.retries = args.retries if args.retries is not None else (1 if args.quick else 2)
    if not args.model.is_file():
        p.error(f"{args.model}: no such GGUF file (`make model` makes the demo one)")
    if args.reps < 1 or args.decode_tokens < 2:
        p.error("--reps must be at least 1 and --decode-tokens at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    args = parse(argv)
    if args.from_json:
        return _rewrite(args.from_json)
    started, load_start = time.time(), machine.load_average()
    binary = args.llama_server or peer.ensure_llama_server()
    with tempfile.TemporaryDirectory(prefix="llamabundle-bench-") as tmp:
        work = Path(tmp)
        built, build = buildtime.measure(args.model.resolve(), work, args.reps)
        artifact = (args.artifact or built).resolve()
        specs = _specs(args, artifact, binary, work)
        plan = Plan(Prompts(args.model.resolve()), args.decode_tokens, work,
                    args.max_foreign_cpu, args.retries)
        for spec in specs:
            warm_up(spec, plan)
        runs: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in specs}
        for rep in range(args.reps):
            for spec in specs[rep % len(specs):] + specs[:rep % len(specs)]:
                runs[spec.name].append(result := measure_clean(spec, plan, rep))
                log.info("rep %d/%d %-16s %s", rep + 1, args.reps, spec.name, _brief(result))
        argvs = {spec.name: spec.argv(0) for spec in specs}
    summary = report.summarize(_undisturbed(runs, args.max_foreign_cpu), build)
    data = _data(args, binary, artifact, argvs, runs, build, summary, started, load_start)
    stem = datetime.date.fromtimestamp(started).isoformat() + (f"-{args.tag}" * bool(args.tag))
    _publish(data, args.results, stem)
    return 0


def _publish(data: dict[str, Any], results: Path, stem: str) -> None:
    table = report.markdown(data["summary"], _context(data))
    report.write(results, stem, data, table, _title(data))
    print("\n" + table)
    print(f"bench: wrote {results}/{stem}.json, .md and .png "
          f"(the run took {data['duration_s'] / 60:.1f} min)")


def _rewrite(path: Path) -> int:
    data = json.loads(path.read_text())
    runs = _undisturbed(data["runs"], data["config"]["max_foreign_cpu"])
    data["summary"] = report.summarize(runs, data["build"])
    _publish(data, path.parent, path.stem)
    return 0


def _specs(args: argparse.Namespace, artifact: Path, binary: Path,
           work: Path) -> list[servers.ServerSpec]:
    chat = servers.chat_format_of(artifact)
    extra = ("--no-repack",) * args.no_repack + tuple(shlex.split(args.peer_args))
    model = args.model.resolve()
    specs = [servers.ours(artifact, args.threads, args.ctx),
             servers.llama_server(binary, model, args.threads, args.ctx, chat, work, extra)]
    if not args.skip_llama_cpp_python:
        specs.append(servers.llama_cpp_python(model, args.threads, args.ctx, chat,
                                              args.no_repack))
    return specs


def _undisturbed(runs: dict[str, list[dict[str, Any]]], limit: float
                 ) -> dict[str, list[dict[str, Any]]]:
    """Launches others disturbed even after the retries drop out of the summary (not the JSON);
    a placeholder keeps launch i of each server paired with launch i of the others."""
    def keep(run: dict[str, Any]) -> dict[str, Any]:
        busy = run.get("foreign_cpu_max", 0.0)
        return run if busy <= limit else {"left_out": f"others used {busy:.0%} of the CPUs"}
    return {name: [keep(run) for run in server_runs] for name, server_runs in runs.items()}


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return "FAILED: " + result["error"].splitlines()[0][:120]
    return (f"decode {result['decode_tps']:.1f} tok/s, prefill {result['prefill_tps']:.0f} "
            f"tok/s, ready {result['launch_ready_s']:.2f} s, first token "
            f"{result['launch_first_token_s']:.2f} s, peak {result['peak_rss_mb']:.0f} MB; "
            f"others used {result['foreign_cpu_max'] * 100:.0f}% CPU")


def _data(args: argparse.Namespace, binary: Path, artifact: Path, argvs: dict[str, Any],
          runs: dict[str, Any], build: dict[str, Any], summary: dict[str, Any],
          started: float, load_start: list[float]) -> dict[str, Any]:
    return {
        "date": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "command": " ".join(["python -m bench", *map(shlex.quote, sys.argv[1:])]),
        "note": args.note,
        "config": {"model": str(args.model.resolve()), "threads": args.threads,
                   "ctx": args.ctx, "reps": args.reps, "decode_tokens": args.decode_tokens,
                   "quick": args.quick, "no_repack": args.no_repack,
                   "peer_args": args.peer_args, "artifact_given": bool(args.artifact),
                   "max_foreign_cpu": args.max_foreign_cpu, "retries": args.retries,
                   "artifact": str(artifact)},
        "machine": {**machine.info(binary, servers.REPO),
                    "load_average_start": load_start, "load_average_end": machine.load_average()},
        "peer_build": peer.build_info(binary),
        "server_commands": argvs,  # port 0 stands for the free port each launch was given
        "runs": runs,
        "build": build,
        "summary": summary,
    }


def _context(data: dict[str, Any]) -> str:
    m, c = data["machine"], data["config"]
    note = f" Note: {data['note']}" if data["note"] else ""
    launches = [r for runs in data["runs"].values() for r in runs]
    repeated = sum(len(r.get("discarded_attempts", [])) for r in launches)
    still = sum(r.get("foreign_cpu_max", 0) > c["max_foreign_cpu"] for r in launches)
    failed = sum("error" in r for r in launches)
    return (
        f"`{data['command']}` ({data['date'][:10]}, {data['duration_s'] / 60:.1f} min): "
        f"{m['cpu']}, {m['physical_cores']} physical cores, {m['os']}, kernel {m['kernel']}; "
        f"load average {m['load_average_start'][0]} at start, {m['load_average_end'][0]} "
        f"at end. Model `{Path(c['model']).name}`, `-t {c['threads']} -c {c['ctx']}`, greedy; "
        f"{c['reps']} launches per server, order rotated each repetition; decode = "
        f"{c['decode_tokens']} tokens timed from the first to the last streamed token; "
        f"prefill = a ~512-token prompt, `max_tokens` 1. Cells: median (min–max); ratios are "
        f"taken pair by pair (launch i of ours against launch i of the peer); noise is the "
        f"coefficient of variation of llama-server's own launches. llama-server "
        f"{m['versions']['llama_server']} is built from the llama-cpp-python "
        f"{m['versions']['llama_cpp_python']} sdist (the same llama.cpp source) for this "
        f"CPU (`-march=native`, less AMX, which crashes here); ours picks its CPU variant at "
        f"start. Shared machine: {repeated} launches were repeated because other "
        f"processes used over {c['max_foreign_cpu']:.0%} of the CPUs during them; {still} "
        f"stayed above that after {c['retries']} retries and are left out of the table (not "
        f"of the JSON); {failed} failed.{note}"
    )


def _title(data: dict[str, Any]) -> str:
    m, c = data["machine"], data["config"]
    return (f"llamabundle vs peers, {Path(c['model']).name}, -t {c['threads']}, "
            f"{c['reps']} launches; {m['cpu']} ({data['date'][:10]})")


if __name__ == "__main__":
    sys.exit(main())
