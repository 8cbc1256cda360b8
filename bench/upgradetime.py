"""`python -m bench.upgradetime [--model GGUF] [--reps N]`: `llamabundle upgrade` against `cp`
of the same artifact, and `cp` + `sync FILE` (upgrade fsyncs; cp does not).

Built from the demo model by default. As in bench/buildtime.py, the page cache cannot be
dropped here, so all are warmed alike (one untimed run each) and timed runs alternate, each
writing a fresh file in the same directory. Each upgrade is the whole command, as a user runs
it: Python's start, the manifest read, the runtime (cached), the copy, the checksum check.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import stats
from bench.buildtime import BUILD_TIMEOUT_S, copy
from bench.servers import REPO

log = logging.getLogger("bench")


def llamabundle(*args: object) -> float:
    """Runs this checkout's build tool (python -m bundler from the repository); its time."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bundler", *map(str, args)], cwd=REPO, check=True,
                   timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def upgrade(artifact: Path, output: Path) -> float:
    return llamabundle("upgrade", artifact, "-o", output)


def measure(artifact: Path, work: Path, reps: int) -> dict[str, list[float]]:
    upgrade(artifact, work / "warmup.llamabundle")
    copy(artifact, work / "warmup-copy")
    times: dict[str, list[float]] = {"upgrade_s": [], "cp_s": [], "cp_sync_s": []}
    for i in range(reps):
        out = work / f"out-{i}"
        times["cp_s"].append(copy(artifact, out))
        out.unlink()
        times["upgrade_s"].append(upgrade(artifact, out))
        out.unlink()
        times["cp_sync_s"].append(copy(artifact, out, durable=True))
        out.unlink()
        log.info("upgrade %d/%d: %.2f s, cp %.2f s, cp + sync %.2f s", i + 1, reps,
                 times["upgrade_s"][-1], times["cp_s"][-1], times["cp_sync_s"][-1])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path,
                        default=REPO / "models" / "gemma-3-270m-q4_k_m.gguf")
    parser.add_argument("--reps", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".upgradetime-") as tmp:
        work = Path(tmp)
        artifact = work / "old.llamabundle"
        llamabundle("build", args.model.resolve(), "-o", artifact)
        times = measure(artifact, work, args.reps)
        size = artifact.stat().st_size
    ratios = [u / c for u, c in zip(times["upgrade_s"], times["cp_sync_s"], strict=True)]
    print(json.dumps({"artifact_mb": size / 1e6, **{k: stats.summary(v) for k, v in
                                                      times.items()},
                      "upgrade_over_cp_sync": stats.summary(ratios)}, indent=1))


if __name__ == "__main__":
    main()
