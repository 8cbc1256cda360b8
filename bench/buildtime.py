"""Build time against `cp` of the same GGUF, and the artifact's size overhead.

The page cache cannot be dropped here, so both are warmed the same way: one untimed build (it
also freezes the runtime on a fresh machine) and one untimed copy, then timed pairs alternate,
each writing a fresh output file in the same directory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")

BUILD_TIMEOUT_S = 1800  # a first build on a fresh machine freezes the runtime (minutes)


def llamabundle_command() -> list[str]:
    """The build tool installed next to this interpreter (the venv's), as `make bench` has it."""
    import sys

    script = Path(sys.executable).with_name("llamabundle")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bundler"]


def build(model: Path, output: Path) -> float:
    started = time.perf_counter()
    subprocess.run([*llamabundle_command(), "build", str(model), "-o", str(output), "--force"],
                   check=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def copy(model: Path, output: Path, durable: bool = False) -> float:
    """`cp`; with durable, also `sync FILE` (fsync), which the build does and cp does not."""
    started = time.perf_counter()
    subprocess.run(["cp", str(model), str(output)], check=True, timeout=BUILD_TIMEOUT_S)
    if durable:
        subprocess.run(["sync", str(output)], check=True, timeout=BUILD_TIMEOUT_S)
    return time.perf_counter() - started


def measure(model: Path, work: Path, reps: int) -> tuple[Path, dict[str, Any]]:
    """Returns the warm-up artifact (the one the servers run) and the timings."""
    artifact = work / f"{model.stem}.llamabundle"
    log.info("building the artifact (the first build on a machine also freezes the runtime)")
    first_build = build(model, artifact)
    copy(model, work / "warmup.gguf")
    builds, copies, synced = [], [], []
    for i in range(reps):
        copies.append(copy(model, work / f"copy-{i}.gguf"))
        builds.append(build(model, work / f"build-{i}.llamabundle"))
        synced.append(copy(model, work / f"synced-{i}.gguf", durable=True))
        for name in (f"copy-{i}.gguf", f"build-{i}.llamabundle", f"synced-{i}.gguf"):
            (work / name).unlink()  # fresh files each time, and the disk stays clean
        log.info("build %d/%d: %.2f s, cp %.2f s, cp + sync %.2f s", i + 1, reps, builds[-1],
                 copies[-1], synced[-1])
    (work / "warmup.gguf").unlink()
    return artifact, {
        "first_build_s": first_build,
        "build_s": builds,
        "cp_s": copies,
        "cp_sync_s": synced,
        "gguf_bytes": model.stat().st_size,
        "artifact_bytes": artifact.stat().st_size,
        "overhead_mb": (artifact.stat().st_size - model.stat().st_size) / 1e6,
        "filesystem": _filesystem(work),
    }


def _filesystem(path: Path) -> str:
    st = os.statvfs(path)
    return f"{path} ({st.f_bavail * st.f_frsize / 1e9:.0f} GB free)"


def synthetic_gguf(path: Path, gigabytes: float) -> Path:
    """A valid GGUF of about `gigabytes` of random F16 tensors (the build never runs it)."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_name("Synthetic")
    writer.add_context_length(512)
    rng = np.random.default_rng(0)
    chunk = 256 << 20  # bytes per tensor
    for i in range(max(1, round(gigabytes * (1 << 30) / chunk))):
        writer.add_tensor(f"blk.{i}.blob",
                          rng.standard_normal(chunk // 2, dtype=np.float32).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main() -> None:
    """`python -m bench.buildtime [MODEL | --synthetic GB] [--reps N]`: build against `cp` alone,
    for models larger than the demo (the full `make bench` needs one it can also serve)."""
    import argparse
    import json
    import tempfile

    from bench import stats

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--synthetic", type=float, metavar="GB",
                        help="build a synthetic GGUF of this size instead")
    parser.add_argument("--reps", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".buildtime-") as tmp:
        work = Path(tmp)
        model = args.model or synthetic_gguf(work / "synthetic.gguf", args.synthetic or 2.0)
        _, result = measure(model, work, args.reps)
    ratios = [b / c for b, c in zip(result["build_s"], result["cp_s"], strict=True)]
    print(json.dumps({"gguf_gb": result["gguf_bytes"] / 1e9,
                      "build_s": stats.summary(result["build_s"]),
                      "cp_s": stats.summary(result["cp_s"]),
                      "build_over_cp": stats.summary(ratios)}, indent=1))


if __name__ == "__main__":
    main()
