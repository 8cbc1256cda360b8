"""The three servers under test: how each is started, when it is ready, how it is stopped.

Every server gets the same GGUF, thread count, context size and chat template (the GGUF's own,
or the fallback our artifact picked for a GGUF without one). Anything not named here is left at
each server's own default: the benchmark compares what a user gets out of the box.
"""

from __future__ import annotations

import contextlib
import json
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
REPO = Path(__file__).resolve().parent.parent  # so `python -m bench.…` works from any cwd
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


@dataclass(frozen=True)
class ChatFormat:
    """How the peers format a chat so they see the tokens our artifact sees.

    `template` is None when the GGUF's own template is used (every server's default);
    otherwise it is our fallback's Jinja text (for llama-server) and `name` its name in
    llama-cpp-python's chat formats.
    """

    template: str | None = None
    name: str | None = None


def chat_format_of(artifact: Path) -> ChatFormat:
    """The chat formatting our artifact chose at build time (its manifest says which)."""
    from runtime.chat.fallbacks import FALLBACKS  # the artifact's own fallback texts

    info = json.loads(subprocess.run([str(artifact), "--info"], capture_output=True, text=True,
                                     check=True, timeout=120).stdout)
    kind, _, name = str(info.get("chat_template_source", "")).partition(":")
    if kind == "fallback" and name in FALLBACKS:
        return ChatFormat(FALLBACKS[name][0], name)
    if kind != "gguf":
        raise RuntimeError(f"{artifact}: chat template source {kind!r} has no peer equivalent")
    return ChatFormat()


def llama_server(binary: Path, model: Path, threads: int, ctx: int, chat: ChatFormat,
                 work: Path, extra: tuple[str, ...] = ()) -> ServerSpec:
    template_args: list[str] = []
    if chat.template is not None:
        template_file = work / "chat-template.jinja"
        template_file.write_text(chat.template)
        template_args = ["--chat-template-file", str(template_file)]

    def argv(port: int) -> list[str]:
        return [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                "-t", str(threads), "-c", str(ctx), "--jinja", *template_args, *extra]
    return ServerSpec(LLAMA_SERVER, argv, "/health")


def llama_cpp_python(model: Path, threads: int, ctx: int, chat: ChatFormat,
                     no_repack: bool = False) -> ServerSpec:
    format_args = ["--chat_format", chat.name] if chat.name else []
    format_args += ["--no-repack"] * no_repack

    # This server has no /health; it binds its port only after loading, so /v1/models will do.
    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.lcp_server", "--model", str(model),
                "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads),
                "--n_threads_batch", str(threads), "--n_ctx", str(ctx), *format_args]
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
        return sum(_vm_hwm(pid) for pid in process_tree(self.process.pid))


@contextlib.contextmanager
def launched(spec: ServerSpec, log_dir: Path) -> Iterator[Running]:
    """Start the server in its own process group; always stop the whole group afterwards."""
    port = free_port()
    log_path = log_dir / f"{spec.name}-{port}.log"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(spec.argv(port), cwd=REPO, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield Running(spec, process, port, started, log_path)
    except Exception as e:
        stop(process)  # first, so the log holds everything the server said
        e.add_note(_tail(log_path))
        raise
    finally:
        stop(process)


def _tail(path: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


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


def process_tree(root: int) -> list[int]:
    """The pid and all its descendants' pids."""
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
