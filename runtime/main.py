"""The artifact's command line: serve (default), one-shot `-p`, `--info`, `--verify`."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime import __version__, paths, tempdirs
from runtime import settings as settings_mod
from runtime.errors import LlamabundleError, RequestError
from runtime.manifest import Manifest, checksum_text, new_checksum, read_manifest_at
from runtime.state import State
from runtime.worker import Worker

log = logging.getLogger("llamabundle")

PORT_TRIES = 100


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="llamabundle: %(message)s", stream=sys.stderr)
    # asyncio warns "socket.send() raised exception." for every client that hangs up while its
    # answer streams: normal for a chat server, and thousands of lines under load.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    argv = list(sys.argv[1:] if argv is None else argv)
    if paths.frozen():
        _prepare_frozen_process()
        artifact = sys.executable
    else:  # run from a source checkout: python -m runtime ARTIFACT [options]
        if not argv or argv[0].startswith("-"):
            print("usage: python -m runtime ARTIFACT [options]", file=sys.stderr)
            return 2
        artifact = argv.pop(0)
    try:
        manifest = read_manifest_at(artifact)
        args = _parser(manifest).parse_args(argv)
        return _run(artifact, manifest, args)
    except LlamabundleError as e:
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser(manifest: Manifest) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=os.path.basename(sys.executable) if paths.frozen() else "llamabundle-runtime",
        description=f"{manifest.title}: a local assistant. Serves a chat page and an "
                    "OpenAI-compatible API on http://localhost:8080/.")
    settings_mod.add_arguments(parser, manifest.defaults)
    parser.add_argument("-p", "--prompt", metavar="TEXT",
                        help="Answer TEXT on stdout and exit (no server).")
    parser.add_argument("--info", action="store_true",
                        help="Print the manifest, and the CPU code chosen here, as JSON.")
    parser.add_argument("--verify", action="store_true",
                        help="Check the weights against the manifest's checksum.")
    parser.add_argument("--version", action="version",
                        version=f"llamabundle runtime {__version__}")
    return parser


def _run(artifact: str, manifest: Manifest, args: argparse.Namespace) -> int:
    if args.info:
        from runtime import cpu  # imports llama.cpp

        info = {**manifest.summary(), "cpu": cpu.load().as_dict()}
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    if args.verify:
        return verify(artifact, manifest)
    given = {o.name: getattr(args, o.name) for o in settings_mod.OPTIONS}
    settings = settings_mod.resolve(manifest.defaults, given)
    if args.prompt is not None:
        return one_shot(artifact, manifest, settings, args.prompt)
    return serve(artifact, manifest, settings)


def verify(artifact: str, manifest: Manifest) -> int:
    weights = manifest.section("weights")
    digest = new_checksum()
    with open(artifact, "rb") as f:
        f.seek(weights.offset)
        remaining = weights.length
        while remaining:
            chunk = f.read(min(remaining, 1 << 22))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    if remaining or checksum_text(digest) != weights.checksum:
        log.error("%s: weights are corrupted (checksum mismatch); get a fresh copy", artifact)
        return 1
    print(f"OK: weights match {weights.checksum}")
    return 0


def _load_engine(artifact: str, manifest: Manifest, settings: Any) -> Any:
    from runtime.engine import Engine  # imports llama.cpp: only when a model is needed

    return Engine.load(artifact, manifest, settings)


def one_shot(artifact: str, manifest: Manifest, settings: Any, prompt: str) -> int:
    from runtime.decode import Finish

    engine = _load_engine(artifact, manifest, settings)
    log.info("CPU code: %s", engine.cpu.describe())
    try:
        for event in engine.chat({"messages": [{"role": "user", "content": prompt}]}):
            if not isinstance(event, Finish):
                sys.stdout.write(event)
                sys.stdout.flush()
    except RequestError as e:
        log.error("%s", e)
        return 1
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `port`, or the next free one (said on stderr)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in range(port, min(port + PORT_TRIES, 65536)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), candidate))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE and port != 0:
                continue
            raise settings_mod.SettingsError(f"cannot listen on {host}:{candidate}: "
                                             f"{e.strerror}") from None
        sock.listen(128)
        if candidate != port:
            log.info("port %d is in use; using %d instead", port, candidate)
        return sock
    raise settings_mod.SettingsError(f"no free port in {port}..{port + PORT_TRIES - 1}")


def serve(artifact: str, manifest: Manifest, settings: Any) -> int:
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{'localhost' if host == '127.0.0.1' else host}:{port}/"
    state = State(manifest, Worker())
    print(f"{manifest.title} is starting on {url}  (Ctrl-C to stop)", flush=True)

    def load() -> None:
        try:
            state.engine = _load_engine(artifact, manifest, settings)
            log.info("model loaded (CPU code: %s); ready on %s", state.engine.cpu.describe(),
                     url)
        except LlamabundleError as e:
            state.load_error = str(e)
            log.error("%s", e)

    # First in line, so requests wait behind it; and started before the web stack is
    # imported, so llama.cpp reads the model while Python imports FastAPI.
    state.worker.submit(load)
    import uvicorn

    from runtime.server import create_app

    app = create_app(dataclasses.replace(settings, port=port), state)
    if not settings.nobrowser and _has_display():
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            ws="none", timeout_graceful_shutdown=2)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    # Skip interpreter teardown: freeing llama.cpp objects from finalizers at exit is where
    # crashes happen, and a generation still running on the worker thread must not hold us up.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or sys.platform == "darwin")


def _prepare_frozen_process() -> None:
    # PyInstaller points LD_LIBRARY_PATH at its unpacked libraries; programs we start (the
    # browser) must see the user's own environment instead.
    if "LD_LIBRARY_PATH_ORIG" in os.environ:
        os.environ["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH_ORIG"]
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)
    # If the bootloader (our parent) dies, die too rather than live on holding the port.
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
    own = Path(sys._MEIPASS)  # type: ignore[attr-defined]
    tempdirs.claim(own)
    tempdirs.sweep(own, own.parent)
