"""`python -m bench.windows`: the Windows .exe under wine against the Linux artifact, same model,
same machine, launches alternating: decode tokens/s, launch -> /health, and the .exe's size
beyond the GGUF.

    .venv/bin/python -m bench.windows [--model GGUF] [--reps 3] [--tokens 128] [--out JSON]

Where wine (or mingw-w64, for the test prefix's stand-in DLL) is missing it says so and exits
0, so that `make bench` runs everywhere else.

wine adds no compute, so decode should be at parity (goal >= 0.95x); launch pays wine's start
and PyInstaller's unpacking on Windows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import wine  # noqa: E402  (tests/wine.py: the prefix with its stand-in DLL, the launch)

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Write a long story about a lighthouse keeper and a storm."


def launch(artifact: Path, env: dict[str, str], port: int) -> tuple[subprocess.Popen, float]:
    cmd = [str(artifact), "--nobrowser", "--port", str(port), "--ollama-port", "0", "-t", "2"]
    if artifact.suffix == ".exe":
        cmd.insert(0, str(wine.WINE))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, time.monotonic() - started
        except httpx.TransportError:
            time.sleep(0.05)


def decode_tps(port: int, tokens: int) -> float:
    name = httpx.get(f"http://127.0.0.1:{port}/api/tags", timeout=30).json()["models"][0]["name"]
    reply = httpx.post(f"http://127.0.0.1:{port}/api/generate", timeout=600, json={
        "model": name, "prompt": PROMPT, "stream": False,
        "options": {"num_predict": tokens, "temperature": 0}}).json()
    return reply["eval_count"] / reply["eval_duration"] * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "gemma-3-270m-q4_k_m.gguf")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    if wine.MISSING:
        print(f"bench.windows: skipped: {wine.MISSING}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-windows-") as tmp:
        summary = bench(args, Path(tmp))
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


def bench(args: argparse.Namespace, work: Path) -> dict:
    build = subprocess.run([sys.executable, "-m", "bundler", "build", str(args.model), "--os",
                            "linux,windows", "-o", str(work / "model")],
                           capture_output=True, text=True)
    if build.returncode != 0:  # e.g. no Windows runtime package: `make runtime-windows`
        raise SystemExit(f"bench.windows: {build.stderr.strip()}")
    env = wine.make_prefix(work / "prefix")
    results: dict[str, dict[str, list[float]]] = {
        "linux": {"decode_tps": [], "launch_ready_s": []},
        "windows (wine)": {"decode_tps": [], "launch_ready_s": []}}
    variants: dict[str, str] = {}
    try:
        for rep in range(args.reps):
            order = [("linux", work / "model.llamabundle"), ("windows (wine)", work / "model.exe")]
            for name, artifact in order if rep % 2 == 0 else order[::-1]:
                port = 18600 + rep
                proc, ready = launch(artifact, dict(env) if name != "linux" else dict(os.environ),
                                     port)
                try:
                    decode_tps(port, 8)  # warm-up
                    results[name]["decode_tps"].append(decode_tps(port, args.tokens))
                    results[name]["launch_ready_s"].append(ready)
                    variants[name] = httpx.get(f"http://127.0.0.1:{port}/props",
                                               timeout=30).json()["cpu"]["variant"]
                finally:
                    proc.terminate()
                    proc.wait(30)
    finally:
        wine.end_prefix(env)
    gguf = args.model.stat().st_size
    summary = {name: {k: round(statistics.median(v), 3) for k, v in r.items()}
               for name, r in results.items()} | {
        "runs": results, "cpu_variant": variants,
        "exe_beyond_gguf_mb": round(((work / "model.exe").stat().st_size - gguf) / 1e6, 1),
        "llamabundle_beyond_gguf_mb": round(((work / "model.llamabundle").stat().st_size
                                              - gguf) / 1e6, 1)}
    summary["decode_ratio"] = round(summary["windows (wine)"]["decode_tps"]
                                    / summary["linux"]["decode_tps"], 3)
    return summary


if __name__ == "__main__":
    main()
