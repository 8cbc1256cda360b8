"""Build the peer `llama-server` from the llama.cpp source that llama-cpp-python vendors.

Both servers run the same llama.cpp commit: the source comes from the llama-cpp-python sdist of
the installed version (`pip download`). The peer is compiled as a llama.cpp user compiles it by
default, for the machine it runs on (-march=native), so the ratio also measures what our
portable build (one CPU variant per instruction-set level, chosen at start) gives up. One
change: AMX is left out, as native AMX kernels crash on this (virtualised) machine with Q4_K
weights. The binary is cached under `${XDG_CACHE_HOME:-~/.cache}/llamabundle/peer/`, keyed by
that version and a hash of the cmake arguments. Nothing here is written into the repository.

Run `python -m bench.peer` to build (or find) it ahead of a benchmark.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("bench.peer")

# Static libraries keep the binary self-contained so it can leave its temp build dir. No UI
# download, no TLS, no tests or examples: the benchmark needs only the HTTP API, and the
# machine may be offline.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"  # gcc: explicit -mno-* beats -march
CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    f"-DCMAKE_C_FLAGS={NO_AMX}",
    f"-DCMAKE_CXX_FLAGS={NO_AMX}",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)
BUILD_TIMEOUT_S = 3 * 3600


def llama_cpp_python_version() -> str:
    return importlib.metadata.version("llama_cpp_python")


def peer_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llamabundle" / "peer"


def cache_dir(version: str) -> Path:
    digest = hashlib.sha256("\n".join(CMAKE_ARGS).encode()).hexdigest()[:12]
    return peer_root() / f"llama.cpp-{version}-{digest}"


def cached_server(version: str | None = None) -> Path | None:
    """The cached llama-server binary, or None when it has not been built yet."""
    binary = cache_dir(version or llama_cpp_python_version()) / "llama-server"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def ensure_llama_server(jobs: int = 2) -> Path:
    """Return the cached llama-server, building it first (minutes) when missing."""
    version = llama_cpp_python_version()
    found = cached_server(version)
    if found:
        return found
    root = peer_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        found = cached_server(version)  # another process may have built it meanwhile
        if found:
            return found
        source = _vendored_source(version, root)
        return _build(source, cache_dir(version), jobs, version)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _vendored_source(version: str, root: Path) -> Path:
    """Unpack the sdist's vendor/llama.cpp (downloading the sdist once) and return its path."""
    unpacked = root / "src" / f"llama_cpp_python-{version}"
    source = unpacked / "vendor" / "llama.cpp"
    if (source / "CMakeLists.txt").is_file():
        return source
    sdist_dir = root / "sdist"
    sdist = sdist_dir / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        log.info("downloading the llama-cpp-python %s sdist", version)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d", str(sdist_dir)],
            check=True, timeout=1800,
        )
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        with tarfile.open(sdist) as tar:
            tar.extractall(staging, filter="data")
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(unpacked, ignore_errors=True)
        (staging / unpacked.name).rename(unpacked)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return source


def _build(source: Path, final: Path, jobs: int, version: str) -> Path:
    build_dir = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    log_path = build_dir / "build.log"
    log.info("compiling llama-server from %s (minutes; log: %s)", source, log_path)
    started = time.monotonic()
    try:
        with open(log_path, "w") as out:
            for command in (
                ["cmake", "-S", str(source), "-B", str(build_dir / "cmake"), *CMAKE_ARGS],
                ["cmake", "--build", str(build_dir / "cmake"), "--target", "llama-server",
                 f"-j{jobs}"],
            ):
                subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT,
                               timeout=BUILD_TIMEOUT_S)
        staging = build_dir / "staging"
        staging.mkdir()
        shutil.copy2(build_dir / "cmake" / "bin" / "llama-server", staging / "llama-server")
        info = {"llama_cpp_python": version, "cmake_args": list(CMAKE_ARGS),
                "source": str(source), "build_seconds": round(time.monotonic() - started, 1)}
        (staging / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        staging.rename(final)  # one step: a half-built peer is never seen as cached
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"building llama-server failed ({e}); see {log_path}") from None
    shutil.rmtree(build_dir, ignore_errors=True)
    log.info("llama-server built in %.0f s", time.monotonic() - started)
    return final / "llama-server"


def build_info(binary: Path) -> dict[str, object]:
    path = binary.parent / "build.json"
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    print(ensure_llama_server())
