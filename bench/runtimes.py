"""`python -m bench.runtimes` (part of `make bench`): the runtime package against the old way.

The runtime package's runtime is compiled in a Debian 11 root (CPython 3.11 with gcc 10,
llama.cpp with clang 19, against glibc 2.31). Before it, the runtime was frozen on the
builder's machine: its Python, a llama.cpp compiled there with its gcc. This builds that old
runtime (from the same sources, with runtime-package/freeze.py; llama-cpp-python compiled here
once and cached), builds the demo model with each runtime, and times both side by side with
the main benchmark's launches (bench/runner.py), order alternating: is the old toolchain a cost?

    .venv/bin/python -m bench.runtimes [--model GGUF] [--reps 5]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from bench import machine, stats
from bench.prompts import Prompts
from bench.runner import Plan, measure_clean, warm_up
from bench.servers import REPO, ServerSpec

log = logging.getLogger("bench")
NEW, OLD = "runtime package (Debian 11 root)", "frozen on this machine (old)"
SHOWN = [("decode_tps", "decode (tokens/s)"), ("prefill_tps", "prefill (tokens/s)"),
         ("ttft_s", "time to first token (s)"), ("launch_ready_s", "launch → /health (s)"),
         ("peak_rss_mb", "peak memory (MB)")]


def cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llamabundle"


def llama_env() -> dict[str, str]:
    script = ('. ./runtime-package/llama.env && '
              'printf "%s\\n" "$LLAMA_CPP_VERSION" "$CMAKE_ARGS" "$CPU_VARIANTS"')
    out = subprocess.run(["sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    version, cmake_args, variants = out.splitlines()
    return {"LLAMA_CPP_VERSION": version, "CMAKE_ARGS": cmake_args, "CPU_VARIANTS": variants}


def host_llama_wheel(env: dict[str, str]) -> Path:
    """llama-cpp-python compiled on this machine with its own compiler, as setup-venv.sh once
    did (same cache folder and key, so a machine that has that wheel reuses it)."""
    text = "{LLAMA_CPP_VERSION}\n{CMAKE_ARGS}\n{CPU_VARIANTS}\n".format(**env)
    text += (REPO / "scripts" / "cpu_variants.py").read_text()
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = cache() / "wheels" / f"llama-cpp-python-{env['LLAMA_CPP_VERSION']}-{key}"
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    if found:
        return found[0]
    log.info("compiling llama-cpp-python on this machine for the old runtime (minutes, once)")
    with tempfile.TemporaryDirectory(dir=cache()) as tmp:
        work = Path(tmp)
        pip = [sys.executable, "-m", "pip"]
        subprocess.run([*pip, "download", "-q", "--no-deps", "--no-binary", "llama-cpp-python",
                        f"llama-cpp-python=={env['LLAMA_CPP_VERSION']}", "-d", str(work)],
                       check=True)
        subprocess.run(["tar", "-xzf", next(str(p) for p in work.glob("*.tar.gz")), "-C",
                        str(work)], check=True)
        source = work / f"llama_cpp_python-{env['LLAMA_CPP_VERSION']}"
        subprocess.run([sys.executable, str(REPO / "scripts" / "cpu_variants.py"), str(source),
                        *env["CPU_VARIANTS"].split()], check=True)
        subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-cache-dir", str(source), "-w",
                        str(work / "wheel")], check=True, env={**os.environ, **env})
        folder.parent.mkdir(parents=True, exist_ok=True)
        (work / "wheel").rename(folder)
    return sorted(folder.glob("llama_cpp_python-*.whl"))[0]


def old_runtime() -> Path:
    """The runtime frozen on this machine, from this checkout's sources, cached by them."""
    from bundler.runtime_package import source_key

    wheel = host_llama_wheel(llama_env())
    key = hashlib.sha256(f"{source_key()} {sys.version} {wheel.name} {wheel.stat().st_size}"
                         .encode()).hexdigest()[:16]
    base = cache() / "bench" / "host-runtime"
    runtime = base / key / "runtime"
    if runtime.exists():
        return runtime
    venv = base / "venv"
    log.info("freezing the runtime on this machine (the old way) for the comparison")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pins = subprocess.run([sys.executable, str(REPO / "runtime-package" / "pins.py"),
                           str(REPO / "pyproject.toml")], capture_output=True, text=True,
                          check=True).stdout.split()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pins, str(wheel)], check=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        subprocess.run([str(venv / "bin" / "python"), str(REPO / "runtime-package" / "freeze.py"),
                        str(REPO), str(Path(tmp) / "work"), str(Path(tmp) / "out")], check=True)
        runtime.parent.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "out" / "runtime").rename(runtime)
    return runtime


def build_both(model: Path, work: Path) -> dict[str, Path]:
    from bundler import build as build_module
    from bundler.runtime_package import Runtime, archive_offset

    old = old_runtime()
    artifacts = {NEW: work / "new.llamabundle", OLD: work / "old.llamabundle"}
    build_module.build(build_module.BuildOptions(model=model, output=artifacts[NEW]))
    # The same build, handed the old runtime instead of the installed package's.
    with mock.patch.object(build_module, "ensure_runtime",
                           lambda: Runtime(old, "host", archive_offset(old))):
        build_module.build(build_module.BuildOptions(model=model, output=artifacts[OLD]))
    return artifacts


def spec(name: str, artifact: Path, threads: int, ctx: int) -> ServerSpec:
    def argv(port: int) -> list[str]:
        return [str(artifact), "--nobrowser", "--host", "127.0.0.1", "--port", str(port),
                "-t", str(threads), "-c", str(ctx)]
    return ServerSpec(name, argv, "/health")


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _ in SHOWN:
        ratios = stats.paired(runs[NEW], runs[OLD], key)
        out[key] = {NEW: stats.summary(stats.values(runs[NEW], key)),
                    OLD: stats.summary(stats.values(runs[OLD], key)),
                    "ratio": stats.summary(ratios)}
    return out


def markdown(summary: dict[str, Any]) -> str:
    def cell(s: dict[str, Any], fmt: str = "{:.3g}") -> str:
        if not s.get("n"):
            return "failed"
        return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"
    rows = [f"| metric | {NEW} | {OLD} | new / old |", "| --- | --- | --- | --- |"]
    for key, label in SHOWN:
        e = summary[key]
        rows.append(f"| {label} | {cell(e[NEW])} | {cell(e[OLD])} | "
                    f"{cell(e['ratio'], '{:.2f}×')} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(prog="python -m bench.runtimes",
                                description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "models" / "gemma-3-270m-q4_k_m.gguf")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--max-foreign-cpu", type=float, default=0.10,
                   help="repeat a launch when other processes used more than this share of "
                        "all CPUs during it (default 0.10)")
    p.add_argument("--retries", type=int, default=2, help="repeats allowed per launch")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    threads = machine.physical_cores()
    with tempfile.TemporaryDirectory(prefix="llamabundle-runtimes-") as tmp:
        work = Path(tmp)
        artifacts = build_both(args.model.resolve(), work)
        specs = [spec(name, path, threads, args.ctx) for name, path in artifacts.items()]
        plan = Plan(Prompts(args.model.resolve()), args.decode_tokens, work,
                    args.max_foreign_cpu, args.retries)
        for s in specs:
            warm_up(s, plan)
        runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in specs}
        for rep in range(args.reps):
            for s in specs[rep % 2:] + specs[:rep % 2]:
                runs[s.name].append(result := measure_clean(s, plan, rep))
                log.info("rep %d/%d %s: decode %.1f tok/s", rep + 1, args.reps, s.name,
                         result.get("decode_tps", float("nan")))
    summary = summarize(runs)
    table = markdown(summary)
    stem = datetime.date.today().isoformat() + "-runtimes"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.json").write_text(json.dumps(
        {"model": str(args.model), "threads": threads, "reps": args.reps, "runs": runs,
         "summary": summary}, indent=1, default=str))
    (args.results / f"{stem}.md").write_text(table + "\n")
    print("\n" + table)
    print(f"bench: wrote {args.results}/{stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
