"""What the numbers were measured on: CPU, cores, kernel, load, and every version involved."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def physical_cores() -> int:
    """Distinct (package, core) pairs among the CPUs this process may run on."""
    usable = os.sched_getaffinity(0)
    cores = set()
    for cpu in usable:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        with contextlib.suppress(OSError):
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
    return max(1, len(cores) or len(usable))


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_total_gb() -> float | None:
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1e6, 1)
    return None


def os_name() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(command: list[str], cwd: Path | None = None) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
        return (done.stdout + done.stderr).strip() or None
    return None


def info(llama_server: Path | None, repo: Path) -> dict[str, Any]:
    flags = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "")
    server_version = _run([str(llama_server), "--version"]) if llama_server else None
    return {
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_features": sorted(f for f in flags.split() if f.startswith(("avx", "amx"))),
        "memory_gb": memory_total_gb(),
        "kernel": platform.release(),
        "os": os_name(),
        "python": platform.python_version(),
        "versions": {
            "llamabundle": _version("llamabundle"),
            "llama_cpp_python": _version("llama_cpp_python"),
            "llama_server": server_version.splitlines()[0] if server_version else None,
            "httpx": _version("httpx"),
        },
        "git": {
            "commit": _run(["git", "rev-parse", "--short", "HEAD"], repo),
            "dirty_files": len((_run(["git", "status", "--porcelain"], repo) or "").splitlines()),
        },
    }
