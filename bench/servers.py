"""The three servers under test: how each is started, when it is ready, how it is stopped.

Every server gets the same GGUF, thread count, context size and chat format (Gemma's turn
markers, which is what our artifact falls back to for the demo model). Anything not named here
is left at each server's own default: the benchmark compares what a user gets out of the box.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

OURS, LLAMA_SERVER, LLAMA_CPP_PYTHON = "llamabundle", "llama-server", "llama-cpp-python"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: Callable[[int], list[str]]  # port -> command line
    ready_path: str  # answers 200 once the model is loaded


def ours(artifact: Path, threads: int, ctx: int) -> ServerSpec:
    def argv(port: int) -> list[str]:
        return [str(artifact), "--nobrowser", "--host", "127.0.0.1", "--port", str(port),
                "-t", str(threads), "-c", str(ctx)]
    return ServerSpec(OURS, argv, "/health")


def llama_server(binary: Path, model: Path, threads: int, ctx: int,
                 template_file: Path) -> ServerSpec:
    def argv(port: int) -> list[str]:
        return [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                "-t", str(threads), "-c", str(ctx), "--jinja",
                "--chat-template-file", str(template_file)]
    return ServerSpec(LLAMA_SERVER, argv, "/health")


def llama_cpp_python(model: Path, threads: int, ctx: int) -> ServerSpec:
    # This server has no /health; it binds its port only after loading, so /v1/models will do.
    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads),
                "--n_threads_batch", str(threads), "--n_ctx", str(ctx),
                "--chat_format", "gemma"]
    return ServerSpec(LLAMA_CPP_PYTHON, argv, "/v1/models")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    started: float  # time.perf_counter() just before the process was spawned
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, client: httpx.Client, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll the readiness route every 5 ms; return seconds since launch."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode} "
                                   f"before it was ready; see {self.log_path}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(self.url + self.spec.ready_path, timeout=2.0).status_code == 200:
                    return time.perf_counter() - self.started
            time.sleep(0.005)
        raise RuntimeError(f"{self.spec.name} not ready after {timeout:.0f} s; "
                           f"see {self.log_path}")

    def peak_rss_bytes(self) -> int:
        """Sum of VmHWM (peak resident set) over the process and all its descendants."""
        return sum(_vm_hwm(pid) for pid in _tree(self.process.pid))


@contextlib.contextmanager
def launched(spec: ServerSpec, log_dir: Path) -> Iterator[Running]:
    """Start the server in its own process group; always stop the whole group afterwards."""
    port = free_port()
    log_path = log_dir / f"{spec.name}-{port}.log"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(spec.argv(port), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Running(spec, process, port, started, log_path)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    # The group may outlive its leader (a onefile bootloader's child): kill it either way.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
            # The command name may hold spaces and parentheses: parse after the last ')'.
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _vm_hwm(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
