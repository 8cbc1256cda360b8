"""Serving: the listening socket, the model loading on the worker, the web app around them.

The web layer (runtime/web/) and the engine never import each other; this module wires them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import signal
import socket
import sys
import threading
import webbrowser
from types import FrameType

from runtime import system
from runtime.artifact.manifest import Manifest
from runtime.errors import LlamabundleError, SettingsError
from runtime.load import load_engine
from runtime.settings import Settings
from runtime.state import State
from runtime.worker import Worker

log = logging.getLogger("llamabundle")

PORT_TRIES = 100


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; OSError if the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    system.own_port(sock)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `port`, or the next free one (said on stderr)."""
    for candidate in range(port, min(port + PORT_TRIES, 65536)):
        try:
            sock = listen(host, candidate)
        except OSError as e:
            if e.errno == errno.EADDRINUSE and port != 0:
                continue
            raise SettingsError(f"cannot listen on {host}:{candidate}: {e.strerror}") from None
        if candidate != port:
            log.info("port %d is in use; using %d instead", port, candidate)
        return sock
    raise SettingsError(f"no free port in {port}..{port + PORT_TRIES - 1}")


def bind_ollama(settings: Settings, main_port: int) -> socket.socket | None:
    """A second socket on Ollama's port, where Ollama's clients look with no setup; None when
    it is off or taken (by Ollama itself, say). Only that exact port: clients look nowhere
    else. The same app answers on it, behind the same Host and API-key checks."""
    port = settings.ollama_port
    if not port or port == main_port:
        return None
    try:
        return listen(settings.host, port)
    except OSError as e:
        log.info("port %d (Ollama's) is not free (%s): Ollama clients need this server's "
                 "address", port, e.strerror)
        return None


def serve(artifact: str, manifest: Manifest, settings: Settings) -> int:
    """Serves until stopped. Exit code 0, or 1 if the model could not be loaded (the page and
    /health say why meanwhile)."""
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    sockets = [sock]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    host = "localhost" if host == "127.0.0.1" else host
    url = f"http://{host}:{port}/"
    state = State(manifest, dataclasses.replace(settings, port=port),
                  Worker(threads=settings.parallel))
    state.artifact = artifact
    stop = "Ctrl-C or close this window to stop" if system.WINDOWS else "Ctrl-C to stop"
    print(f"{manifest.title} is starting on {url}  ({stop})", flush=True)
    ollama_sock = bind_ollama(settings, port)
    if ollama_sock:
        sockets.append(ollama_sock)
        print(f"Ollama clients find it on http://{host}:{settings.ollama_port}/ too "
              "(--ollama-port 0 turns that off)", flush=True)

    def load() -> None:
        try:
            engine = load_engine(artifact, manifest, settings)
        except LlamabundleError as e:
            state.load_error = str(e)
            log.error("%s", e)
            return
        engine.observe = state.observe
        state.engine = engine
        log.info("model loaded (CPU code: %s); ready on %s", engine.cpu.describe(), url)

    _exit_on_signal(state)
    # First in line, so requests wait behind it; and started before the web stack is
    # imported, so llama.cpp reads the model while Python imports FastAPI.
    state.worker.submit(load)
    import uvicorn

    from runtime.web.app import create_app

    app = create_app(state)
    if not settings.nobrowser and _has_display():
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            ws="none", timeout_graceful_shutdown=2)
    asyncio.run(uvicorn.Server(config).serve(sockets=sockets))
    # Skip interpreter teardown: freeing llama.cpp objects from finalizers at exit is where
    # crashes happen, and a generation still running on the worker thread must not hold us up.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if state.load_error else 0)


def _exit_on_signal(state: State) -> None:
    """SIGTERM and SIGINT end the process with 1 if the model could not be loaded, else as
    killed by the signal (128 + its number). uvicorn handles them while it serves (a graceful
    shutdown), then hands them back here."""

    def handler(sig: int, frame: FrameType | None) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if state.load_error else 128 + sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or sys.platform == "darwin")
